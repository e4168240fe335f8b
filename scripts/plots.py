#!/usr/bin/env python3
"""The report's figures: plain JSON figure specs drawn as SVG with matplotlib.

A figure is a dict that JSON can hold (so the report can store it and draw it again without the
runs), and `render(spec)` turns it into the text of one standalone SVG file. Three kinds:

  lines       {"kind": "lines", "series": [{"label", "x", "y", "yerr"?, "dashed"?}],
               "logx"?, "hlines"?: [{"y", "label"}], "xrange"?: [lo, hi]}
              curves over a numeric x; yerr (the seed std) draws error bars.
  categories  {"kind": "categories", "categories": [names], "series": [{"label", "values",
               "errors"?}], "vlines"?: [{"x", "label"}]}
              one row per category, the value along x (a dot, with error bars).
  hist        {"kind": "hist", "series": [{"label", "edges", "fractions"}]}
              step histograms, the fraction of values per bin.

Every kind also has "title", "xlabel", "ylabel" and "range": [lo, hi] of the plotted quantity
(null where it is open, e.g. [0, 100] for an error in percent): the value axis never leaves it.
Ticks are 1, 2 or 5 times a power of ten, the value axis ends on ticks, and the legend sits above
the plot area, outside it, so it covers no data and no label.

Output is deterministic: the same spec gives the same bytes (fixed hash salt, no date, text kept
as <text> so the browser check can measure it).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
# Reference lines (hlines, vlines): grey, dashed then dotted.
REFERENCE = [dict(color="#555555", linestyle=(0, (5, 4)), linewidth=1.2),
             dict(color="#555555", linestyle=(0, (1, 2.5)), linewidth=1.4)]
STEPS = [1, 2, 5, 10]  # tick steps: 1, 2 or 5 times a power of ten
RC = {
    "svg.hashsalt": "dropkit",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "axes.axisbelow": True,
    "legend.frameon": False,
}
WIDTH, HEIGHT = 8.0, 4.2  # inches: 576 x 302 pt, drawn 768 px wide on a 980 px page


def nice_limits(lo, hi, bounds=(None, None)):
    """The axis limits for data in [lo, hi]: a small margin, on 1-2-5 ticks, within `bounds`.

    Data close to a bound (within half its span) show the bound, so an error near zero is read
    against zero."""
    qlo, qhi = bounds
    if hi <= lo:
        lo, hi = lo - max(abs(lo) * 0.05, 0.5), hi + max(abs(hi) * 0.05, 0.5)
    span = hi - lo
    if qlo is not None and lo - qlo <= 0.5 * span:
        lo = qlo
    if qhi is not None and qhi - hi <= 0.5 * span:
        hi = qhi
    lo_m = lo if lo == qlo else lo - 0.04 * span
    hi_m = hi if hi == qhi else hi + 0.04 * span
    ticks = MaxNLocator(nbins=6, steps=STEPS).tick_values(lo_m, hi_m)
    eps = 1e-9 * span
    a = max(t for t in ticks if t <= lo_m + eps)
    b = min(t for t in ticks if t >= hi_m - eps)
    if qlo is not None:
        a = max(a, qlo)
    if qhi is not None:
        b = min(b, qhi)
    return a, b


def log_limits(lo, hi):
    """A logarithmic axis's limits for data in [lo, hi] (> 0): the 1-2-5 values around them."""
    def grid(v, up):
        k = math.floor(math.log10(v))
        values = [m * 10.0**e for e in (k - 1, k, k + 1) for m in (1, 2, 5)]
        return (min(x for x in values if x >= v * (1 - 1e-9)) if up else
                max(x for x in values if x <= v * (1 + 1e-9)))
    a, b = grid(lo, False), grid(hi, True)
    return (a, b) if b > a else (grid(lo * 0.99, False), grid(hi * 1.01, True))


def _number(v, _pos=None):
    return f"{v:g}"


def _value_axis(axis, lo, hi, bounds):
    a, b = nice_limits(lo, hi, bounds)
    axis.set_major_locator(MaxNLocator(nbins=6, steps=STEPS))
    axis.set_major_formatter(FuncFormatter(_number))
    return a, b


def _finite(v):
    return v is not None and math.isfinite(v)


def _lines(ax, spec):
    ys = []
    for k, s in enumerate(spec["series"]):
        err = s.get("yerr")
        pts = [(x, y, (err[i] if err else 0) or 0) for i, (x, y) in enumerate(zip(s["x"], s["y"]))
               if _finite(y)]
        if not pts:
            continue
        xs, yv, ev = zip(*pts)
        ys += [y - e for y, e in zip(yv, ev)] + [y + e for y, e in zip(yv, ev)]
        ax.errorbar(xs, yv, yerr=ev if any(ev) else None, color=COLORS[k % len(COLORS)],
                    linestyle="--" if s.get("dashed") else "-", marker="o", markersize=4,
                    capsize=3, linewidth=1.6, elinewidth=1, label=s["label"], clip_on=False)
    for k, h in enumerate(spec.get("hlines", [])):
        ys.append(h["y"])
        ax.axhline(h["y"], label=h["label"], **REFERENCE[k % len(REFERENCE)])
    if not ys:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="#777777")
        return
    if spec.get("logx"):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=STEPS, integer=spec.get("xinteger", False)))
    ax.xaxis.set_major_formatter(FuncFormatter(_number))
    xs = [x for s in spec["series"] for x, y in zip(s["x"], s["y"]) if _finite(y)]
    if spec.get("logx"):
        ax.set_xlim(*log_limits(min(xs), max(xs)))
    else:
        span = (max(xs) - min(xs)) or 1
        xr = spec.get("xrange") or [None, None]  # where given, the axis spans the whole range
        ax.set_xlim(min(xs) - 0.03 * span if xr[0] is None else xr[0],
                    max(xs) + 0.03 * span if xr[1] is None else xr[1])
    ax.set_ylim(*_value_axis(ax.yaxis, min(ys), max(ys), spec.get("range", (None, None))))


def _categories(ax, spec):
    cats = spec["categories"]
    n = len(spec["series"])
    vs = []
    for k, s in enumerate(spec["series"]):
        off = (k - (n - 1) / 2) * 0.22
        err = s.get("errors") or [0] * len(cats)
        ys = [i + off for i in range(len(cats))]
        vs += [v - e for v, e in zip(s["values"], err)] + [v + e for v, e in zip(s["values"], err)]
        ax.errorbar(s["values"], ys, xerr=err if any(err) else None, color=COLORS[k % len(COLORS)],
                    linestyle="none", marker="o", markersize=5, capsize=3, elinewidth=1,
                    label=s["label"])
    for k, h in enumerate(spec.get("vlines", [])):
        vs.append(h["x"])
        ax.axvline(h["x"], label=h["label"], **REFERENCE[k % len(REFERENCE)])
    ax.set_yticks(range(len(cats)), cats)
    ax.set_ylim(len(cats) - 0.5, -0.5)  # the first category on top
    ax.grid(False, axis="y")
    ax.set_xlim(*_value_axis(ax.xaxis, min(vs), max(vs), spec.get("range", (None, None))))


def _hist(ax, spec):
    top = 0.0
    xs = []
    for k, s in enumerate(spec["series"]):
        e, f = s["edges"], s["fractions"]
        ax.stairs(f, e, color=COLORS[k % len(COLORS)], linewidth=1.6, label=s["label"])
        top = max(top, max(f))
        xs += [e[0], e[-1]]
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=STEPS))
    ax.xaxis.set_major_formatter(FuncFormatter(_number))
    ax.set_xlim(*nice_limits(min(xs), max(xs), spec.get("xrange", (None, None))))
    ax.set_ylim(*_value_axis(ax.yaxis, 0.0, top, (0, 1)))


KINDS = {"lines": _lines, "categories": _categories, "hist": _hist}


def render(spec) -> str:
    """The SVG text (a standalone file) of a figure spec."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(WIDTH, HEIGHT), layout="constrained")
        FigureCanvasAgg(fig)  # a renderer, to measure the legend
        ax = fig.add_subplot()
        KINDS[spec["kind"]](ax, spec)
        ax.set_xlabel(spec.get("xlabel", ""))
        ax.set_ylabel(spec.get("ylabel", ""))
        fig.suptitle(spec["title"], x=0.01, ha="left", fontsize=11.5, fontweight="bold")
        handles, labels = ax.get_legend_handles_labels()
        # The data first, then the reference lines.
        data = {s["label"] for s in spec["series"]}
        order = sorted(range(len(labels)), key=lambda i: labels[i] not in data)
        handles, labels = [handles[i] for i in order], [labels[i] for i in order]
        # Above the plot area, left-aligned, in as many columns as fit in the figure's width.
        for ncol in range(len(labels), 0, -1):
            legend = ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0, 1.01),
                               ncol=ncol, borderaxespad=0, handlelength=2.2, columnspacing=1.5)
            fig.canvas.draw()  # lays the figure out, so that the extent is where it will be
            box = legend.get_window_extent()
            if box.x0 >= 0 and box.x1 <= fig.bbox.width - 4:
                break
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def write(spec, stem):
    """Writes STEM.json (the spec) and STEM.svg (its figure)."""
    stem = Path(stem)
    for path, text in ((stem.with_suffix(".json"), json.dumps(spec, indent=1) + "\n"),
                       (stem.with_suffix(".svg"), render(spec))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def inline(svg: str, prefix: str) -> str:
    """An SVG file's text made fit to sit inside an HTML page: no XML prolog, and its ids
    prefixed so that several figures on one page do not share one."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


if __name__ == "__main__":
    # scripts/plots.py SPEC.json...: draws each stored figure again, SPEC.svg beside it.
    if len(sys.argv) < 2:
        sys.exit("usage: scripts/plots.py SPEC.json...")
    for name in sys.argv[1:]:
        write(json.loads(Path(name).read_text()), Path(name).with_suffix(""))
