"""dropkit.dropout and the family: the bits against the RNG's definition and the C++ layer, the
same at any thread count, the keep rate, dtypes, copies and errors."""

import math

import numpy as np
import pytest

import dropkit
from philox_ref import keep_mask, philox

SHAPES = [(1,), (63,), (64,), (65,), (3, 100), (2, 3, 17, 5), (4096,)]


def test_philox_reference_matches_random123_vectors():
    # Random123 1.09 kat_vectors, as tests/rng/philox_test.cpp checks the C++ Philox.
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for c, k, expected in cases:
        assert tuple(int(w) for w in philox(c, k)) == expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_mask_is_the_rng_definition(shape, p):
    n = math.prod(shape)
    for seed, layer, step in [(1, 0, 0), (0x0123456789ABCDEF, 3, 7), (42, 1, (1 << 32) + 5)]:
        x = np.random.default_rng(seed & 0xFFFF).standard_normal(shape).astype(np.float32)
        y = dropkit.dropout(x, p, seed=seed, layer=layer, step=step)
        keep = keep_mask(n, p, seed, layer, step).reshape(shape)
        scale = np.float32(1.0 / (1.0 - p)) if p < 1 else np.float32(0)
        expected = np.where(keep, x * scale, np.float32(0))
        assert y.dtype == np.float32 and y.shape == shape
        np.testing.assert_array_equal(y, expected)
        mask = dropkit.dropout_mask(shape, p, seed=seed, layer=layer, step=step)
        np.testing.assert_array_equal(mask, keep)


@pytest.mark.parametrize("mask_bits", [16, 8])
def test_narrow_masks_are_the_rng_definition(mask_bits):
    for p in [0.2, 0.5]:
        mask = dropkit.dropout_mask((1000,), p, seed=9, layer=2, step=11, mask_bits=mask_bits)
        np.testing.assert_array_equal(mask, keep_mask(1000, p, 9, 2, 11, mask_bits=mask_bits))


def test_sample_mode_draws_from_the_sampling_domain():
    mask = dropkit.dropout_mask((500,), 0.5, seed=3, layer=1, step=4, mode="sample")
    np.testing.assert_array_equal(mask, keep_mask(500, 0.5, 3, 1, 4, mode="sample"))
    assert not np.array_equal(mask, dropkit.dropout_mask((500,), 0.5, seed=3, layer=1, step=4))


@pytest.mark.parametrize("mode", ["train", "sample", "eval"])
@pytest.mark.parametrize("scaling", ["inverted", "inference"])
def test_equal_to_the_cpp_layer(mode, scaling):
    # dropkit.noise builds the registry's dropout layer (layer `layer` of a model) and runs it.
    rng = np.random.default_rng(5)
    for shape, p, seed, layer, step in [((7, 33), 0.3, 11, 0, 0), ((2, 3, 8, 8), 0.5, 99, 4, 123),
                                        ((5, 200), 0.8, 1 << 40, 2, (1 << 33) + 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        fast = dropkit.dropout(x, p, seed=seed, layer=layer, step=step, mode=mode,
                               scaling=scaling)
        ref = dropkit.noise("dropout", x, seed=seed, layer=layer, step=step, mode=mode,
                            drop_prob=p, scaling=scaling)
        np.testing.assert_array_equal(fast, ref)
        if mode == "train":
            dy = rng.standard_normal(shape).astype(np.float32)
            np.testing.assert_array_equal(
                dropkit.dropout_backward(dy, p, seed=seed, layer=layer, step=step,
                                         scaling=scaling),
                dropkit.noise("dropout", x, seed=seed, layer=layer, step=step, dy=dy,
                              drop_prob=p, scaling=scaling))


def test_backward_is_dy_times_mask_over_keep():
    dy = np.random.default_rng(1).standard_normal((3, 1000)).astype(np.float32)
    p = 0.25
    dx = dropkit.dropout_backward(dy, p, seed=8, layer=1, step=2)
    mask = dropkit.dropout_mask(dy.shape, p, seed=8, layer=1, step=2)
    np.testing.assert_array_equal(dx, np.where(mask, dy * np.float32(1 / (1 - p)), 0))


def test_eval_scalings():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(dropkit.dropout(x, 0.4, seed=1, mode="eval"), x)
    np.testing.assert_array_equal(
        dropkit.dropout(x, 0.4, seed=1, mode="eval", scaling="inference"),
        x * np.float32(1 - 0.4))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_within_five_sigma(p):
    n = 1 << 20
    kept = int(dropkit.dropout_mask((n,), p, seed=17, layer=0, step=3).sum())
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) < 5 * sigma


def test_same_bits_at_any_thread_count():
    x = np.random.default_rng(2).standard_normal(1 << 18).astype(np.float32)
    ys = [dropkit.dropout(x, 0.5, seed=4, layer=1, step=9, threads=t) for t in (1, 2, 3, 0)]
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])
    gs = [dropkit.gaussian_dropout(x.reshape(64, -1), 0.3, seed=4, threads=t) for t in (1, 3)]
    np.testing.assert_array_equal(gs[0], gs[1])


def test_out_writes_in_place_without_copies():
    x = np.ones(1000, dtype=np.float32)
    y = dropkit.dropout(x, 0.5, seed=1, out=x)
    assert y is x or np.shares_memory(y, x)
    np.testing.assert_array_equal(x != 0, dropkit.dropout_mask(1000, 0.5, seed=1))
    out = np.empty(1000, dtype=np.float32)
    assert np.shares_memory(dropkit.dropout(np.ones(1000), 0.5, seed=1, out=out), out)


def test_other_dtypes_and_layouts_are_converted_once():
    base = np.arange(200, dtype=np.float64).reshape(10, 20)
    ref = dropkit.dropout(base.astype(np.float32), 0.5, seed=3)
    np.testing.assert_array_equal(dropkit.dropout(base, 0.5, seed=3), ref)
    np.testing.assert_array_equal(dropkit.dropout(base.astype(np.int32), 0.5, seed=3), ref)
    view = np.asfortranarray(base.astype(np.float32))
    np.testing.assert_array_equal(dropkit.dropout(view, 0.5, seed=3), ref)
    strided = base.astype(np.float32)[:, ::2]
    np.testing.assert_array_equal(dropkit.dropout(strided, 0.5, seed=3),
                                  dropkit.dropout(np.ascontiguousarray(strided), 0.5, seed=3))


def test_zero_size_and_scalar_arrays():
    assert dropkit.dropout(np.zeros((0, 5), np.float32), 0.5, seed=1).shape == (0, 5)
    assert dropkit.dropout(np.float32(2.0), 0.0, seed=1) == 2.0


@pytest.mark.parametrize("bad", [np.zeros(4, np.complex64), np.array([1, "a"], dtype=object),
                                 np.array(["x"])])
def test_non_real_dtypes_are_type_errors_naming_the_dtype(bad):
    with pytest.raises(TypeError, match=str(bad.dtype)):
        dropkit.dropout(bad, 0.5, seed=1)


def test_bad_arguments_are_value_errors_with_the_library_message():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"drop_prob = nan is outside the valid range \[0, 1\]"):
        dropkit.dropout(x, float("nan"), seed=1)
    with pytest.raises(ValueError, match="1.5"):
        dropkit.dropout(x, 1.5, seed=1)
    with pytest.raises(ValueError, match="mode 'tran' is not one of train, eval, sample"):
        dropkit.dropout(x, 0.5, seed=1, mode="tran")
    with pytest.raises(ValueError, match="scaling 'x' is not one of inverted, inference"):
        dropkit.dropout(x, 0.5, seed=1, scaling="x")
    with pytest.raises(ValueError, match="mask_bits = 12"):
        dropkit.dropout(x, 0.5, seed=1, mask_bits=12)
    with pytest.raises(ValueError, match="threads"):
        dropkit.dropout(x, 0.5, seed=1, threads=-1)
    with pytest.raises(ValueError, match="layer"):
        dropkit.dropout(x, 0.5, seed=1, layer=-1)
    with pytest.raises(ValueError, match="shape"):
        dropkit.dropout(x, 0.5, seed=1, out=np.ones(5, np.float32))
    with pytest.raises(TypeError, match="float64"):
        dropkit.dropout(x, 0.5, seed=1, out=np.ones(4))
    with pytest.raises(ValueError, match="overlaps"):
        big = np.ones(8, np.float32)
        dropkit.dropout(big[:4], 0.5, seed=1, out=big[2:6])
    with pytest.raises(ValueError, match="not a layer of the dropout family"):
        dropkit.noise("dense", np.ones((2, 3), np.float32), seed=1, units=3)


def test_the_family_runs_and_is_keyed_like_dropout():
    x = np.random.default_rng(4).standard_normal((8, 3, 4, 4)).astype(np.float32)
    g1 = dropkit.gaussian_dropout(x, 0.3, seed=5, layer=1, step=2)
    g2 = dropkit.gaussian_dropout(x, 0.3, seed=5, layer=1, step=2)
    np.testing.assert_array_equal(g1, g2)
    assert not np.array_equal(g1, dropkit.gaussian_dropout(x, 0.3, seed=5, layer=1, step=3))
    np.testing.assert_array_equal(dropkit.gaussian_dropout(x, 0.3, seed=5, mode="eval"), x)
    a = dropkit.alpha_dropout(x, 0.2, seed=5)
    dropped = np.float32(-1.7580993408473766)
    assert np.isfinite(a).all() and not np.array_equal(a, x)
    n = dropkit.gaussian_noise(x, 0.1, seed=5)
    assert np.abs(n - x).max() < 0.1 * 6
    spatial = dropkit.noise("dropout", x, seed=5, drop_prob=0.5, shared_axes="2+3")
    per_channel = (spatial == 0).reshape(8, 3, -1)
    assert (per_channel.all(axis=2) | ~per_channel.any(axis=2)).all()
    del dropped
