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
