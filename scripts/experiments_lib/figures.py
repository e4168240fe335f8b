"""Figures as plain dicts (scripts/plots.py draws them), so that the report can be drawn again
from its stored JSON without the runs."""

from __future__ import annotations



def series(label, points, **kw):
    """A curve of a `lines` figure from [(x, mean, std)]."""
    return dict(label=label, x=[p[0] for p in points], y=[p[1] for p in points],
                yerr=[p[2] for p in points], **kw)


def histogram(groups, bins=30):
    """[(label, values)] -> `hist` series: the fraction of each group's values per bin, over bins
    shared by all groups."""
    allv = [v for _, vs in groups for v in vs]
    lo, hi = min(allv), max(allv)
    if hi == lo:
        hi = lo + 1
    edges = [lo + (hi - lo) * k / bins for k in range(bins + 1)]
    out = []
    for label, vs in groups:
        h = [0] * bins
        for v in vs:
            h[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
        out.append(dict(label=label, edges=edges, fractions=[c / len(vs) for c in h]))
    return out


ERROR_RANGE = [0, 100]  # an error in percent
