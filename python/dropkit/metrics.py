"""The set-level numbers of ``dropkit predict``, on probabilities you already have.

The C++ library computes them (``src/dropkit/predict/uncertainty.h``); these functions pass
arrays to it, so the numbers are the ones ``dropkit predict --json`` prints for the same
probabilities. ``probs`` is [examples, classes] (converted to float64 once), ``labels`` one
integer class per row. The prediction of a row is its first class of highest probability and
its confidence that probability.

- ``accuracy``: the fraction of rows predicted right.
- ``nll``: the mean of -log p[label] (natural log). ``predict`` takes log p[label] from the
  samples' log-probabilities (log-sum-exp, finite where p underflows); pass those as
  ``log_prob_label`` to get its exact value, otherwise log(probs[label]) is used.
- ``brier``: the mean of sum_c (p_c - [c == label])^2, in [0, 2].
- ``ece``: expected calibration error over 15 equal-width confidence bins (b/15, (b+1)/15]
  (bin 0 also takes confidence 0): sum_b (n_b / N) |accuracy_b - mean confidence_b|.
- ``auroc(scores, positive)``: the probability that a random positive scores higher than a
  random negative, ties counting one half; NaN when either class is empty.

Bad shapes or labels outside the classes raise ValueError, non-real dtypes TypeError.
"""

from . import _core

__all__ = ["evaluate", "accuracy", "nll", "brier", "ece", "auroc", "BINS"]

BINS = _core.calibration_bins


def evaluate(probs, labels, *, log_prob_label=None):
    """All four at once: a dict with ``examples``, ``accuracy``, ``nll``, ``brier``, ``ece``."""
    return _core.aggregate(probs, labels, log_prob_label=log_prob_label)


def accuracy(probs, labels):
    return evaluate(probs, labels)["accuracy"]


def nll(probs, labels, *, log_prob_label=None):
    return evaluate(probs, labels, log_prob_label=log_prob_label)["nll"]


def brier(probs, labels):
    return evaluate(probs, labels)["brier"]


def ece(probs, labels):
    return evaluate(probs, labels)["ece"]


def auroc(scores, positive):
    """AUROC of ``scores`` (higher: more likely positive) for the bools ``positive``."""
    return _core.auroc(scores, positive)
