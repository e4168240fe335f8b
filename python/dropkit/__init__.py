"""dropkit: dropout with masks that are a pure function of (seed, layer, step, element).

The functions here run dropkit's C++ kernels (the extension module ``dropkit._core``) on NumPy
arrays; ``dropkit.torch`` adapts them to PyTorch. docs/python.md is the guide: arguments,
dtypes and copies, exceptions, and the bits guarantee (the same masks as the C++ library and
``dropkit train``, at any thread count).
"""

import numpy as _np

from . import _core
from ._core import TrainingDiverged

# The library's version, from CMakeLists.txt's project() through the compiled module.
__version__ = _core.__version__

__all__ = [
    "dropout",
    "dropout_backward",
    "dropout_mask",
    "gaussian_dropout",
    "gaussian_noise",
    "alpha_dropout",
    "noise",
    "train",
    "predict",
    "option_names",
    "TrainingDiverged",
]


def dropout(x, p, *, seed, layer=0, step=0, mode="train", scaling="inverted", mask_bits=32,
            threads=0, out=None, row_offset=0):
    """Dropout of ``x`` at drop rate ``p``, as layer ``layer`` of a dropkit model draws it at
    training step ``step`` (``mode="train"``), or Monte-Carlo sample ``step``
    (``mode="sample"``); ``mode="eval"`` applies the inference scaling and draws nothing.

    ``scaling``: "inverted" (kept units times 1/(1-p), eval the identity) or "inference" (the
    paper's: kept units as they are, eval times 1-p). ``mask_bits``: 32, 16 or 8 bits per keep
    decision. Element i of ``x`` (its flat index in C order) is element i of the stream; with
    ``row_offset=r`` x is rows r, r+1, ... of a larger batch (first axis: examples) and draws
    exactly what those rows of the whole batch draw.

    A C-contiguous float32 ``x`` is read where it lies; other real dtypes and layouts are
    converted to float32 once. Returns a new float32 array, or writes ``out`` (a C-contiguous
    float32 array of x's shape, which may be ``x`` itself) and returns it.
    """
    return _core.dropout(x, p, seed=seed, layer=layer, step=step, mode=mode, scaling=scaling,
                         mask_bits=mask_bits, threads=threads, out=out, row_offset=row_offset)


def dropout_backward(dy, p, *, seed, layer=0, step=0, scaling="inverted", mask_bits=32,
                     threads=0, out=None, row_offset=0):
    """The gradient of ``dropout`` in train mode: ``dy * mask * s`` with the forward's mask,
    regenerated from (seed, layer, step) (s = 1/(1-p) inverted, 1 inference)."""
    return _core.dropout_backward(dy, p, seed=seed, layer=layer, step=step, scaling=scaling,
                                  mask_bits=mask_bits, threads=threads, out=out,
                                  row_offset=row_offset)


def dropout_mask(shape, p, *, seed, layer=0, step=0, mode="train", mask_bits=32, threads=0):
    """The keep mask (bool array of ``shape``) that ``dropout`` applies for these arguments."""
    if isinstance(shape, int):
        shape = (shape,)
    return _core.dropout_mask(list(shape), p, seed=seed, layer=layer, step=step, mode=mode,
                              mask_bits=mask_bits, threads=threads)


def noise(kind, x, *, seed, layer=0, step=0, mode="train", threads=0, dy=None, row_offset=0,
          **options):
    """Any layer of the dropout family by its kind ("dropout", "gaussian_dropout",
    "gaussian_noise", "alpha_dropout", ...) with its options (as in a ``--net`` spec, e.g.
    ``drop_prob=0.5, shared_axes="2+3"``), as layer ``layer`` of a model: the forward in
    ``mode``, or with ``dy`` the gradient of the train-mode forward. The input's first axis is
    the examples; ``row_offset`` is the rows' index in the whole batch (or data set, when
    sampling), as for ``dropout``. Works on copies (use ``dropout`` for the zero-copy path)."""
    return _core.noise(kind, x, options, seed=seed, layer=layer, step=step, mode=mode,
                       threads=threads, dy=dy, row_offset=row_offset)


def gaussian_dropout(x, p, *, seed, layer=0, step=0, mode="train", shared_axes="", threads=0,
                     dy=None):
    """Multiplicative Gaussian noise N(1, p/(1-p)) (Srivastava et al. 2014, section 10)."""
    return noise("gaussian_dropout", x, seed=seed, layer=layer, step=step, mode=mode,
                 threads=threads, dy=dy, drop_prob=p, shared_axes=shared_axes)


def gaussian_noise(x, sigma, *, seed, layer=0, step=0, mode="train", threads=0, dy=None):
    """Additive Gaussian noise N(0, sigma^2)."""
    return noise("gaussian_noise", x, seed=seed, layer=layer, step=step, mode=mode,
                 threads=threads, dy=dy, sigma=sigma)


def alpha_dropout(x, p, *, seed, layer=0, step=0, mode="train", shared_axes="", mask_bits=32,
                  threads=0, dy=None):
    """Alpha dropout for SELU networks (Klambauer et al. 2017)."""
    return noise("alpha_dropout", x, seed=seed, layer=layer, step=step, mode=mode,
                 threads=threads, dy=dy, drop_prob=p, shared_axes=shared_axes,
                 mask_bits=mask_bits)


def option_names():
    """The options ``train`` takes as keywords: TrainConfig's, as ``dropkit train --help``
    lists them (with '-' for '_')."""
    return list(_core.option_names())


def train(out=None, *, data=None, resume=None, overwrite=False, threads=0, progress=None,
          on_epoch=None, **options):
    """Trains as ``dropkit train`` does and returns the history (one dict per epoch).

    ``options`` are TrainConfig's (``option_names()``: net, epochs, lr, seed, ...), checked by
    it. ``out``: the run directory (config.json, checkpoint.safetensors, metrics.jsonl,
    curves.svg, written after every epoch as the CLI writes them); None trains without saving.
    ``data``: an MNIST-style directory of IDX files (default: Debian's Fashion-MNIST).
    ``resume``: a run directory to continue (``epochs`` is then the new total; ``out``
    defaults to it). ``progress(done, total, loss)`` is called after every step,
    ``on_epoch(record)`` after every epoch. Ctrl-C stops at a step boundary with the last
    epoch's checkpoint intact (KeyboardInterrupt propagates).
    """
    t = _core.Training(out="" if out is None else str(out),
                       resume="" if resume is None else str(resume),
                       data="" if data is None else str(data), options=options,
                       threads=threads, overwrite=overwrite)
    try:
        while t.epochs_done < t.epochs:
            record = t.run_epoch(progress)
            t.write_epoch()
            if on_epoch is not None:
                on_epoch(record)
        return t.history
    finally:
        t.close()


def predict(model_dir, images, labels=None, *, mc=0, seed=None, max_rows=2048, threads=0):
    """Predictions of the run saved in ``model_dir`` for uint8 ``images`` of shape
    (N, rows, cols), as ``dropkit predict`` computes them: with ``mc=0`` one eval-mode pass
    (weight scaling), with ``mc=T`` Monte-Carlo dropout over T samples keyed by ``seed`` (the
    run's seed when None) and each example's index. Returns a dict: ``probs`` (N, classes),
    ``predicted``, ``confidence``, ``entropy``, ``expected_entropy``, ``mutual_information``,
    ``variance`` per example, and with ``labels`` also ``log_prob_label`` and ``metrics``
    (accuracy, nll, brier, ece)."""
    return _core.predict(str(model_dir), _np.asarray(images), labels, mc=mc, seed=seed,
                         max_rows=max_rows, threads=threads)
