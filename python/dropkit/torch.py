"""dropkit for PyTorch: ``Dropout``, ``GaussianDropout``, ``AlphaDropout`` and ``SpatialDropout``
modules on dropkit's kernels, ``convert`` and ``mc_predict``.

Imported only when asked for (``import dropkit.torch``), and only where torch is installed.

``Dropout(p, layer=i, seed=s)`` draws, in training, exactly the masks ``dropkit.dropout(x, p,
seed=s, layer=i, step=t)`` draws (and layer i of a dropkit model), t being the module's step
counter: a buffer named ``step`` that advances by one per training forward and is saved in
``state_dict`` (so a restored model continues its masks). The forward runs on the tensor's own
memory (CPU float32; a non-contiguous tensor is made contiguous once), the backward regenerates
the mask from (seed, layer, step) instead of saving it. The bits do not depend on
``torch.set_num_threads`` or dropkit's ``threads``.

``GaussianDropout``, ``AlphaDropout`` and ``SpatialDropout`` (one mask value per example and
channel of [N, C, ...]) key their noise the same way (``dropkit.noise`` of their kind at
(seed, layer, step)); they run the library's layer on copies, and their backward reruns the
layer's forward and backward from the saved input, so it too regenerates the noise instead of
storing it.
"""

import numpy as _np
import torch as _torch
from torch import nn as _nn

from . import _core

__all__ = ["Dropout", "GaussianDropout", "AlphaDropout", "SpatialDropout", "convert",
           "mc_predict"]


def _checked(t, what):
    if t.device.type != "cpu" or t.dtype != _torch.float32:
        raise TypeError(f"{what} is a {t.dtype} tensor on {t.device}: dropkit.torch takes float32 "
                        "tensors on the CPU")
    return t.detach().contiguous()


def _empty_like(t):
    """An uninitialized float32 tensor of t's shape on memory NumPy allocates. NumPy asks the
    kernel for transparent huge pages on large blocks (madvise; torch's allocator does not), so
    the first write into a fresh 64 MB output faults 32 huge pages instead of 16,384 small ones:
    on a 16M-float tensor that is about 8 ms instead of 40 ms per output, more than the kernel
    itself."""
    return _torch.from_numpy(_np.empty(tuple(t.shape), _np.float32))


class _DropoutFunction(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p, seed, layer, step, scaling, mask_bits, row_offset):
        xc = _checked(x, "the input")
        y = _empty_like(xc)
        _core.dropout(xc.numpy(), p, seed=seed, layer=layer, step=step, mode="train",
                      scaling=scaling, mask_bits=mask_bits, out=y.numpy(), row_offset=row_offset)
        ctx.key = (p, seed, layer, step, scaling, mask_bits, row_offset)
        return y

    @staticmethod
    def backward(ctx, dy):
        p, seed, layer, step, scaling, mask_bits, row_offset = ctx.key
        dyc = _checked(dy, "the gradient")
        dx = _empty_like(dyc)
        _core.dropout_backward(dyc.numpy(), p, seed=seed, layer=layer, step=step,
                               scaling=scaling, mask_bits=mask_bits, out=dx.numpy(),
                               row_offset=row_offset)
        return dx, None, None, None, None, None, None, None


class Dropout(_nn.Module):
    """Dropout at drop rate ``p`` with dropkit's masks: layer id ``layer`` (give each dropout
    module of a model its own; ``convert`` numbers them in module order), run seed ``seed``.
    Training forwards use steps 0, 1, 2, ... (the ``step`` buffer); eval is the identity
    (inverted scaling) or times 1 - p (``scaling="inference"``)."""

    def __init__(self, p=0.5, *, layer=0, seed=0, scaling="inverted", mask_bits=32):
        super().__init__()
        # The library checks p, scaling and mask_bits with its own messages.
        _core.dropout(_np.zeros(1, _np.float32), p, seed=0, scaling=scaling, mask_bits=mask_bits)
        self.p = float(p)
        self.layer = int(layer)
        self.seed = int(seed)
        self.scaling = scaling
        self.mask_bits = int(mask_bits)
        self.register_buffer("step", _torch.zeros((), dtype=_torch.int64))
        self._sample = None  # (sample index, row offset) while mc_predict samples

    def extra_repr(self):
        return f"p={self.p}, layer={self.layer}, seed={self.seed}, scaling={self.scaling}"

    def forward(self, x):
        if self._sample is not None:
            index, row_offset = self._sample
            xc = _checked(x, "the input")
            y = _empty_like(xc)
            _core.dropout(xc.numpy(), self.p, seed=self.seed, layer=self.layer, step=index,
                          mode="sample", scaling=self.scaling, mask_bits=self.mask_bits,
                          out=y.numpy(), row_offset=row_offset)
            return y
        if not self.training:
            if self.scaling == "inverted" or self.p == 0:
                return x
            return x * (1.0 - self.p) if self.p < 1 else _torch.zeros_like(x)
        step = int(self.step)
        y = _DropoutFunction.apply(x, self.p, self.seed, self.layer, step, self.scaling,
                                   self.mask_bits, 0)
        self.step += 1
        return y


class _NoiseFunction(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kind, options, seed, layer, step):
        xc = _checked(x, "the input")
        y = _core.noise(kind, xc.numpy(), options, seed=seed, layer=layer, step=step,
                        mode="train")
        ctx.key = (kind, options, seed, layer, step)
        ctx.save_for_backward(xc)
        return _torch.from_numpy(y)

    @staticmethod
    def backward(ctx, dy):
        kind, options, seed, layer, step = ctx.key
        (xc,) = ctx.saved_tensors
        dyc = _checked(dy, "the gradient")
        dx = _core.noise(kind, xc.numpy(), options, seed=seed, layer=layer, step=step,
                         mode="train", dy=dyc.numpy())
        return _torch.from_numpy(dx), None, None, None, None, None


class _Noise(_nn.Module):
    """A member of the dropout family by its kind and options (as in a ``--net`` spec), keyed like
    ``Dropout``: layer id, seed, and a ``step`` buffer advanced by each training forward."""

    def __init__(self, kind, options, *, layer=0, seed=0):
        super().__init__()
        # The library checks the options (and refuses a kind outside the dropout family).
        _core.noise(kind, _np.zeros((1, 1, 1, 1), _np.float32), options, seed=0, mode="eval")
        self.kind = kind
        self.options = dict(options)
        self.layer = int(layer)
        self.seed = int(seed)
        self.register_buffer("step", _torch.zeros((), dtype=_torch.int64))
        self._sample = None  # (sample index, row offset) while mc_predict samples

    def extra_repr(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{opts}, layer={self.layer}, seed={self.seed}"

    def forward(self, x):
        if self._sample is not None:
            index, row_offset = self._sample
            xc = _checked(x, "the input")
            return _torch.from_numpy(
                _core.noise(self.kind, xc.numpy(), self.options, seed=self.seed, layer=self.layer,
                            step=index, mode="sample", row_offset=row_offset))
        if not self.training:
            xc = _checked(x, "the input")
            return _torch.from_numpy(_core.noise(self.kind, xc.numpy(), self.options, seed=0,
                                                 mode="eval"))
        step = int(self.step)
        y = _NoiseFunction.apply(x, self.kind, self.options, self.seed, self.layer, step)
        self.step += 1
        return y


class GaussianDropout(_Noise):
    """Multiplicative Gaussian noise N(1, p / (1 - p)): Bernoulli dropout's variance at drop
    rate ``p`` (Srivastava et al. 2014, section 10); eval is the identity."""

    def __init__(self, p=0.5, *, layer=0, seed=0):
        super().__init__("gaussian_dropout", {"drop_prob": float(p)}, layer=layer, seed=seed)
        self.p = float(p)


class AlphaDropout(_Noise):
    """Alpha dropout for SELU networks (Klambauer et al. 2017): keeps mean 0 and variance 1."""

    def __init__(self, p=0.5, *, layer=0, seed=0, mask_bits=32):
        super().__init__("alpha_dropout", {"drop_prob": float(p), "mask_bits": int(mask_bits)},
                         layer=layer, seed=seed)
        self.p = float(p)


class SpatialDropout(_Noise):
    """Channel dropout of [N, C, H, W] (or [N, C, L]): one keep decision per example and channel,
    shared by its positions (``shared_axes`` of the library's dropout, "2+3" for images)."""

    def __init__(self, p=0.5, *, layer=0, seed=0, shared_axes="2+3"):
        super().__init__("dropout", {"drop_prob": float(p), "shared_axes": shared_axes},
                         layer=layer, seed=seed)
        self.p = float(p)


_KEYED = (Dropout, _Noise)


def convert(model, *, seed=0):
    """Replaces every ``torch.nn.Dropout``, ``nn.AlphaDropout`` and ``nn.Dropout2d`` of
    ``model`` (in place, returned) by dropkit's ``Dropout``, ``AlphaDropout`` and
    ``SpatialDropout`` of the same rate; all dropkit modules (new and existing) get layer ids
    0, 1, 2, ... in module order and ``seed``. Other dropout kinds stay as they are."""
    replacements = {_nn.Dropout: Dropout, _nn.AlphaDropout: AlphaDropout,
                    _nn.Dropout2d: SpatialDropout}

    def replace(module):
        for name, child in list(module.named_children()):
            ours = replacements.get(type(child))
            if ours is not None:
                setattr(module, name, ours(child.p))
            else:
                replace(child)

    replace(model)
    for i, m in enumerate(x for x in model.modules() if isinstance(x, _KEYED)):
        m.layer, m.seed = i, int(seed)
    return model


_TORCH_DROPOUT = (_nn.Dropout, _nn.Dropout1d if hasattr(_nn, "Dropout1d") else _nn.Dropout,
                  _nn.Dropout2d, _nn.Dropout3d, _nn.AlphaDropout, _nn.FeatureAlphaDropout)


def mc_predict(model, x, samples, *, seed=None, batch_size=None):
    """Monte-Carlo dropout: ``samples`` passes of ``model`` over ``x`` with only its dropout
    modules sampling -- dropkit's modules (sample t of example i keyed by (seed, layer, t,
    i), the same for any ``batch_size``) and torch's dropout modules (torch's generator, seeded
    with ``seed``) -- while batch norm and every other module stay in eval mode (BN uses and
    keeps its running statistics). Functional dropout (``F.dropout`` in a forward) cannot be
    seen and is not sampled; a model with no dropout module is refused (ValueError) rather than
    returning identical samples. The model's modes are restored afterwards.

    Returns a dict of NumPy arrays as ``dropkit.predict`` does: ``probs`` (the mean softmax),
    ``predicted``, ``confidence``, ``entropy``, ``expected_entropy``, ``mutual_information``,
    ``variance`` (of the predicted class's probability over the samples)."""
    if samples < 1:
        raise ValueError(f"samples = {samples} is outside [1, inf)")
    ours = [m for m in model.modules() if isinstance(m, _KEYED)]
    theirs = [m for m in model.modules() if isinstance(m, _TORCH_DROPOUT)]
    if not ours and not theirs:
        raise ValueError("the model has no dropout module to sample (functional dropout such as "
                         "F.dropout cannot be sampled: use a dropout module); Monte-Carlo "
                         "samples would all be the same")
    modes = {m: m.training for m in model.modules()}
    n = x.shape[0]
    batch = n if batch_size is None else int(batch_size)
    sample_seed = 0 if seed is None else int(seed)
    saved_seeds = {m: m.seed for m in ours}
    probs = []
    try:
        model.eval()
        for m in theirs:
            m.train()
        if seed is not None:
            for m in ours:
                m.seed = sample_seed
            _torch.manual_seed(sample_seed)
        with _torch.no_grad():
            for t in range(samples):
                parts = []
                for start in range(0, n, batch):
                    for m in ours:
                        m._sample = (t, start)
                    parts.append(_torch.softmax(model(x[start:start + batch]), dim=-1))
                probs.append(_torch.cat(parts).double().numpy())
    finally:
        for m in ours:
            m._sample = None
            m.seed = saved_seeds[m]
        for m, training in modes.items():
            m.training = training
    return _stats(_np.stack(probs))


def _entropy(p):
    with _np.errstate(divide="ignore", invalid="ignore"):
        return -_np.where(p > 0, p * _np.log(p), 0.0).sum(axis=-1)


def _stats(p):
    """predict/uncertainty.h's per-example statistics from probabilities [T, N, C]."""
    mean = p.mean(axis=0)
    predicted = mean.argmax(axis=1)
    rows = _np.arange(mean.shape[0])
    entropy = _entropy(mean)
    expected = _entropy(p).mean(axis=0)
    chosen = p[:, rows, predicted]
    return {
        "probs": mean,
        "predicted": predicted,
        "confidence": mean[rows, predicted],
        "entropy": entropy,
        "expected_entropy": expected,
        "mutual_information": _np.maximum(entropy - expected, 0.0),
        "variance": ((chosen - chosen.mean(axis=0)) ** 2).mean(axis=0),
        "samples": p.shape[0],
    }
