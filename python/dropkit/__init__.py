"""dropkit: dropout with masks that are a pure function of (seed, layer, step, element).

The functions here run dropkit's C++ kernels (the extension module ``dropkit._core``) on NumPy
arrays; ``dropkit.torch`` adapts them to PyTorch. docs/python.md is the guide: arguments,
dtypes and copies, exceptions, and the bits guarantee (the same masks as the C++ library and
``dropkit train``, at any thread count).
"""

import os as _os
import sys as _sys
import shutil as _shutil
import tempfile as _tempfile

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
    "Model",
    "option_names",
    "options_from_flags",
    "machine",
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


def machine():
    """The machine, as ``lscpu`` names it and ``dropkit bench --json`` records it beside every
    speed figure: a dict of ``cpu`` (the model name), ``vendor``, ``family``, ``model``, ``kind``
    ("GenuineIntel family 6 model 207") and ``isa`` (the kernels chosen: avx512, avx2, scalar);
    "unknown" for what /proc/cpuinfo does not say."""
    return dict(_core.machine())


def option_names():
    """The options ``train`` takes as keywords: TrainConfig's, as ``dropkit train --help``
    lists them (with '-' for '_')."""
    return list(_core.option_names())


def options_from_flags(flags):
    """``dropkit train`` flags as ``train``'s keywords, parsed and checked as the CLI does:
    ``options_from_flags(["--lr", "0.1", "--augment-flip"])`` is ``{"lr": 0.1,
    "augment_flip": True}``; ValueError naming an unknown flag or a bad value."""
    return dict(_core.options_from_flags([str(f) for f in flags]))


def train(out=None, *, data=None, resume=None, overwrite=False, threads=0, progress="auto",
          on_epoch=None, **options):
    """Trains as ``dropkit train`` does and returns the history (one dict per epoch).

    ``options`` are TrainConfig's (``option_names()``: net, epochs, lr, seed, ...), checked by
    it. ``out``: the run directory (config.json, checkpoint.safetensors, metrics.jsonl,
    curves.svg, written after every epoch as the CLI writes them); None trains without saving.
    ``data``: an MNIST-style directory of IDX files or an .npz file (x_train, y_train, x_test,
    y_test; default: Debian's Fashion-MNIST).
    ``resume``: a run directory to continue (``epochs`` is then the new total; ``out``
    defaults to it). ``progress(done, total, loss)`` is called after every step (the default
    "auto" draws a progress line when stderr is a terminal; None draws nothing),
    ``on_epoch(record)`` after every epoch. Ctrl-C stops at a step boundary with the last
    epoch's checkpoint intact (KeyboardInterrupt propagates).
    """
    t = _core.Training(out="" if out is None else str(out),
                       resume="" if resume is None else str(resume),
                       data="" if data is None else str(data), options=options,
                       threads=threads, overwrite=overwrite)
    return _run_epochs(t, progress, on_epoch)


def _progress_line(t):
    """A progress line on stderr, as ``dropkit train`` draws one on a terminal."""
    def show(done, total, loss):
        _sys.stderr.write(f"\repoch {t.epochs_done + 1}/{t.epochs}  step {done}/{total}  "
                          f"loss {loss:.4f}" + ("\n" if done == total else ""))
        _sys.stderr.flush()
    return show


def _run_epochs(t, progress, on_epoch):
    """The epoch loop of ``train`` and ``Model.fit``: each epoch written before the callback.
    ``progress="auto"`` is a progress line when stderr is a terminal, nothing otherwise."""
    try:
        if isinstance(progress, str):
            if progress != "auto":
                raise ValueError(f"progress must be a function, None or 'auto', got {progress!r}")
            progress = _progress_line(t) if _sys.stderr.isatty() else None
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


class Model:
    """A network trained on NumPy arrays and used for prediction: the Python face of ``dropkit
    train`` and ``dropkit predict``, with the same bits.

    ``Model("dense:256:relu,dropout:0.5,dense:10", input_shape=(784,), epochs=10, lr=0.1)``
    keeps the spec (the ``net`` option: a spec string or a JSON file) and any of the trainer's
    options (``option_names()``; without ``net`` the trainer's default net); nothing is
    checked or built until ``fit``, where the data decide the input shape (``input_shape``,
    optional, is checked against them). ``Model.load(run_dir)`` opens a run saved by ``dropkit
    train``, ``dropkit.train`` or ``fit(out=...)``.

    Features are uint8 images (standardized by the training split's statistics, as the IDX
    files are) or real numbers used as given (converted to float32 once), of shape
    (examples, features) or (examples, rows, cols); labels are integers in [0, classes).
    """

    def __init__(self, net=None, *, input_shape=None, **options):
        self._options = dict(options) if net is None else dict(options, net=net)
        # The shape of one example; the data decide it, and fit checks that they agree.
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._dir = None
        self._tmp = None  # the run directory of a fit without ``out``, removed with the model
        self.history = []

    @classmethod
    def load(cls, run_dir):
        """The run saved in ``run_dir``; FileNotFoundError when it holds no checkpoint."""
        checkpoint = _os.path.join(str(run_dir), "checkpoint.safetensors")
        if not _os.path.isfile(checkpoint):
            raise FileNotFoundError(f"{run_dir} holds no checkpoint.safetensors (not a run "
                                    "directory)")
        m = cls.__new__(cls)
        m._options, m._dir, m._tmp, m.history = {}, str(run_dir), None, []
        m.input_shape = None
        return m

    @property
    def run_dir(self):
        """Where the model's checkpoint is (None before ``fit``)."""
        return self._dir

    def fit(self, x, y, x_test, y_test, *, out=None, resume=False, overwrite=False, threads=0,
            progress="auto", on_epoch=None, **options):
        """Trains on (x, y), evaluating (x_test, y_test) after every epoch, and returns the
        history (one dict per epoch, as metrics.jsonl holds it). Keyword options are the
        trainer's (``option_names()``), over those given to the constructor; ``val=N`` holds out
        the last N training examples for validation. ``out``: a run directory to write (without
        one the model keeps its checkpoint in a temporary directory). ``resume=True`` continues
        this model's run (``epochs`` is then the new total) on the same arrays. ``progress`` and
        ``on_epoch`` as for ``train``; Ctrl-C stops at a step boundary, the last epoch's
        checkpoint intact.
        """
        arrays = (x, y, x_test, y_test)
        if self.input_shape is not None:
            for name, a in (("x", x), ("x_test", x_test)):
                shape = tuple(_np.shape(a)[1:])
                if int(_np.prod(shape)) != int(_np.prod(self.input_shape)):
                    raise ValueError(f"{name} has examples of shape {shape}, but the model was "
                                     f"declared with input_shape={self.input_shape}")
        if resume:
            if self._dir is None:
                raise ValueError("resume=True needs a model that was fit or loaded")
            t = _core.Training(out="" if out is None else str(out), resume=self._dir, data="",
                               options=options, threads=threads, overwrite=overwrite,
                               arrays=arrays)
        else:
            if out is None:
                self._cleanup()
                self._tmp = _tempfile.mkdtemp(prefix="dropkit-model-")
                out, overwrite = self._tmp, True
            t = _core.Training(out=str(out), resume="", data="",
                               options=dict(self._options, **options), threads=threads,
                               overwrite=overwrite, arrays=arrays)
        self._dir = t.out
        self.history = _run_epochs(t, progress, on_epoch)
        return self.history

    def predict(self, x, *, threads=0, max_rows=2048):
        """Class probabilities (examples, classes) of one eval-mode pass (weight scaling)."""
        return _core.predict(self._checked_dir(), x, None, mc=0, max_rows=max_rows,
                             threads=threads)["probs"]

    def predict_mc(self, x, samples, *, seed=None, labels=None, threads=0, max_rows=2048):
        """Monte-Carlo dropout over ``samples`` passes keyed by ``seed`` (the run's seed when
        None) and each example's index in ``x``: the same numbers as ``dropkit predict --mc``.
        Returns ``predict``'s dict: ``probs`` (the mean), ``entropy``, ``mutual_information``,
        ``variance``, ... per example, with ``labels`` also ``metrics``."""
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a whole number >= 1, got {samples!r}")
        return _core.predict(self._checked_dir(), x, labels, mc=samples, seed=seed,
                             max_rows=max_rows, threads=threads)

    def _checked_dir(self):
        if self._dir is None:
            raise ValueError("this model has not been fit; call fit() or Model.load()")
        return self._dir

    def _cleanup(self):
        if self._tmp is not None:
            _shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __del__(self):
        self._cleanup()

    def __repr__(self):
        where = f" at {self._dir}" if self._dir else ""
        return f"dropkit.Model({self._options.get('net', '')!r}{where})"
