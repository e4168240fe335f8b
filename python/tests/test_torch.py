"""dropkit.torch: the same bits as the NumPy API, the backward, convert, and mc_predict with
batch norm left in eval mode."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import dropkit  # noqa: E402
import dropkit.torch as dt  # noqa: E402


def test_dropout_module_equals_the_numpy_function_step_by_step():
    m = dt.Dropout(0.3, layer=2, seed=7)
    x = torch.randn(5, 300)
    for step in range(3):
        y = m(x)
        expected = dropkit.dropout(x.numpy(), 0.3, seed=7, layer=2, step=step)
        np.testing.assert_array_equal(y.numpy(), expected)
    assert int(m.step) == 3
    m.eval()
    assert torch.equal(m(x), x) and int(m.step) == 3


def test_backward_is_dy_times_mask_over_keep():
    m = dt.Dropout(0.25, layer=1, seed=3)
    x = torch.randn(4, 257, requires_grad=True)
    y = m(x)
    dy = torch.randn(4, 257)
    y.backward(dy)
    mask = dropkit.dropout_mask((4, 257), 0.25, seed=3, layer=1, step=0)
    expected = np.where(mask, dy.numpy() * np.float32(1 / 0.75), np.float32(0))
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_same_bits_at_any_torch_thread_count_and_non_contiguous_input():
    x = torch.randn(64, 512)
    old = torch.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(dt.Dropout(0.5, seed=1)(x))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(outs[0], outs[1])
    xt = x.t()  # a non-contiguous view: made contiguous once
    np.testing.assert_array_equal(dt.Dropout(0.5, seed=1)(xt).numpy(),
                                  dropkit.dropout(xt.contiguous().numpy(), 0.5, seed=1))


def test_refuses_other_dtypes_and_devices():
    with pytest.raises(TypeError, match="float64"):
        dt.Dropout(0.5)(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="drop_prob"):
        dt.Dropout(float("nan"))


def test_step_is_saved_in_the_state_dict():
    m = dt.Dropout(0.5, seed=2)
    m(torch.randn(2, 10))
    m(torch.randn(2, 10))
    n = dt.Dropout(0.5, seed=2)
    n.load_state_dict(m.state_dict())
    x = torch.randn(2, 100)
    assert torch.equal(n(x), m(x))


def test_convert_numbers_dropout_modules_in_order():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5)))
    dt.convert(model, seed=9)
    found = [m for m in model.modules() if isinstance(m, dt.Dropout)]
    assert [(m.p, m.layer, m.seed) for m in found] == [(0.2, 0, 9), (0.5, 1, 9)]


def bn_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16),
                                torch.nn.ReLU(), dt.Dropout(0.5, layer=3, seed=1),
                                torch.nn.Linear(16, 3))
    bn = model[1]
    bn.running_mean.fill_(-2.0)  # far from any batch's statistics
    bn.running_var.fill_(4.0)
    return model


def test_mc_predict_keeps_batch_norm_in_eval_mode():
    model = bn_model()
    model.train()
    x = torch.randn(10, 6)
    bn = model[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    r = dt.mc_predict(model, x, 4, seed=11)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    assert model.training and bn.training  # modes restored
    # Recompute by hand with BN in eval mode and the sampling masks; BN in train mode differs.
    model.eval()
    with torch.no_grad():
        h = torch.relu(model[1](model[0](x)))
        probs = []
        for t in range(4):
            mask = torch.from_numpy(dropkit.dropout(h.numpy(), 0.5, seed=11, layer=3, step=t,
                                                    mode="sample"))
            probs.append(torch.softmax(model[4](mask), dim=-1).double().numpy())
    np.testing.assert_allclose(r["probs"], np.mean(probs, axis=0), rtol=1e-12)
    assert r["variance"].max() > 0 and (r["mutual_information"] >= 0).all()


def test_mc_predict_samples_do_not_depend_on_the_batch_size():
    model = bn_model()
    x = torch.randn(9, 6)
    a = dt.mc_predict(model, x, 3, seed=2)
    b = dt.mc_predict(model, x, 3, seed=2, batch_size=4)
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-6)


def test_mc_predict_refuses_a_model_without_dropout_modules():
    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.nn.functional.dropout(x, 0.5, self.training))

    with pytest.raises(ValueError, match="functional dropout"):
        dt.mc_predict(Functional(), torch.randn(3, 4), 5)


def test_mc_predict_samples_torch_dropout_too():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.5),
                                torch.nn.Linear(16, 3))
    r = dt.mc_predict(model, torch.randn(8, 6), 5, seed=1)
    assert r["variance"].max() > 0
    assert model[1].training  # its mode before, restored


FAMILY = [
    (lambda: dt.GaussianDropout(0.3, layer=2, seed=5), "gaussian_dropout", {"drop_prob": 0.3}),
    (lambda: dt.AlphaDropout(0.2, layer=2, seed=5), "alpha_dropout", {"drop_prob": 0.2}),
    (lambda: dt.SpatialDropout(0.4, layer=2, seed=5), "dropout",
     {"drop_prob": 0.4, "shared_axes": "2+3"}),
]


@pytest.mark.parametrize("make, kind, options", FAMILY)
def test_family_modules_equal_the_library_layer_step_by_step(make, kind, options):
    m = make()
    x = torch.randn(3, 4, 5, 6, requires_grad=True)
    for step in range(3):
        y = m(x)
        expected = dropkit.noise(kind, x.detach().numpy(), seed=5, layer=2, step=step, **options)
        np.testing.assert_array_equal(y.detach().numpy(), expected)
        dy = torch.randn_like(x)
        x.grad = None
        y.backward(dy)
        grad = dropkit.noise(kind, x.detach().numpy(), seed=5, layer=2, step=step,
                             dy=dy.numpy(), **options)
        np.testing.assert_array_equal(x.grad.numpy(), grad)
    assert int(m.step) == 3
    m.eval()
    np.testing.assert_array_equal(
        m(x).detach().numpy(), dropkit.noise(kind, x.detach().numpy(), seed=5, mode="eval",
                                             **options))


def test_gaussian_dropout_backward_multiplies_by_the_forward_noise():
    # y = x e, so dL/dx = dy e: with x = 1 the forward shows e itself.
    m = dt.GaussianDropout(0.5, layer=1, seed=4)
    ones = torch.ones(2, 1000, requires_grad=True)
    e = m(ones)
    dy = torch.randn(2, 1000)
    e.backward(dy)
    np.testing.assert_array_equal(ones.grad.numpy(), (dy * e.detach()).numpy())
    assert abs(float(e.mean()) - 1) < 0.1 and float(e.std()) > 0.5  # N(1, p / (1 - p) = 1)


def test_spatial_dropout_keeps_or_drops_whole_channels():
    m = dt.SpatialDropout(0.5, layer=0, seed=8)
    x = torch.ones(50, 16, 3, 3)
    y = m(x).numpy()
    per_channel = y.reshape(50, 16, 9)
    assert ((per_channel == 0).all(axis=2) | (per_channel == 2).all(axis=2)).all()
    kept = (per_channel[:, :, 0] == 2).mean()
    assert abs(kept - 0.5) < 5 * np.sqrt(0.25 / 800)


def test_convert_replaces_alpha_and_channel_dropout_too():
    model = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Conv2d(1, 2, 1),
                                torch.nn.Dropout2d(0.3), torch.nn.AlphaDropout(0.2))
    dt.convert(model, seed=6)
    assert [type(m) for m in model] == [dt.Dropout, torch.nn.Conv2d, dt.SpatialDropout,
                                        dt.AlphaDropout]
    assert [(model[i].layer, model[i].seed, model[i].p) for i in (0, 2, 3)] == [
        (0, 6, 0.1), (1, 6, 0.3), (2, 6, 0.2)]


def test_mc_predict_samples_family_modules_independently_of_the_batch_size():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), dt.GaussianDropout(0.5, layer=1),
                                torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.randn(9, 6)
    a = dt.mc_predict(model, x, 3, seed=2)
    b = dt.mc_predict(model, x, 3, seed=2, batch_size=4)
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-6)
    assert a["variance"].max() > 0  # the Gaussian noise really sampled
