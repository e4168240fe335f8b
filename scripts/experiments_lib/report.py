"""The report: experiments.json, experiments.md with its figures as files, and a self-contained
experiments.html; and the README's claims block for the paper protocol."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import plots  # scripts/plots.py (scripts/ is on sys.path: scripts/experiments puts it there)

from .runs import ROOT, write_atomic


def write_report(report, report_dir: Path):
    """Writes the report (`report`: what `report_data` returns, or the experiments.json it
    stored) into report_dir: experiments.json, experiments.md with its figures as files under
    figures/experiments/, and experiments.html with the same figures inline (one file)."""
    fig_dir = report_dir / "figures" / "experiments"
    fig_dir.mkdir(parents=True, exist_ok=True)
    summaries = report["summaries"]
    write_atomic(report_dir / "experiments.json", json.dumps(report, indent=1) + "\n")
    heading = f"The paper's experiments on Fashion-MNIST ({report['mode']} mode)"
    intro = (f"Produced by `scripts/experiments --mode {report['mode']}` ({report['stamp']}). "
             f"Setting: {report['description']}.")
    limits = report["limits"] + "." if report["limits"] else ""
    sides = any("short" in s for s in summaries.values())
    md = [f"# {heading}", "",
          "Srivastava et al. (2014) make claims about dropout on MNIST; here each is tested on "
          f"Fashion-MNIST with dropkit. {intro} Numbers are final-epoch test errors (never the "
          "best epoch on test), mean ± std over seeds where more than one ran; error bars in the "
          "figures are that std.", "", *([limits, ""] if limits else []),
          *(["| experiment | verdict | why | short protocol (docs/experiments.md) |", "|---|---|---|---|"]
            if sides else ["| experiment | verdict | why |", "|---|---|---|"])]

    def short_cell(s):
        return f" {s['short']['verdict']} |" if "short" in s else (" - |" if sides else "")

    for name, s in summaries.items():
        md.append(f"| [{s['title']}](#{name}) | **{s['verdict']}** | {s['reason']} |{short_cell(s)}")
    body_html = []
    for name, s in summaries.items():
        md += ["", f'<a id="{name}"></a>', f"## {s['title']}", "",
               f"**Question.** {s['question']}", "", f"**Paper.** {s['paper']}", "",
               f"**Ours.** {s['ours']}", "", f"**Verdict: {s['verdict']}.** {s['reason']}.", "",
               *([short_text(s["short"]), ""] if "short" in s else []),
               s["table"], ""]
        figures = []
        for fname, spec in s["figures"].items():
            svg = plots.render(spec)
            write_atomic(fig_dir / f"{fname}.svg", svg)
            md += [f"![{spec['title']}](figures/experiments/{fname}.svg)", ""]
            figures.append(f'<figure id="fig-{fname}">{plots.inline(svg, fname)}</figure>')
        body_html.append(
            f'<h2 id="{name}">{html.escape(s["title"])}</h2>'
            f"<p><b>Question.</b> {inline_html(s['question'])}</p>"
            f"<p><b>Paper.</b> {inline_html(s['paper'])}</p>"
            f"<p><b>Ours.</b> {inline_html(s['ours'])}</p>"
            f"<p><b>Verdict: {html.escape(s['verdict'])}.</b> {inline_html(s['reason'])}.</p>"
            + (f"<p>{inline_html(short_text(s['short']))}</p>" if "short" in s else "")
            + md_table_html(s["table"]) + "".join(figures))
    write_atomic(report_dir / "experiments.md", "\n".join(md).rstrip() + "\n")
    summary = md_table_html("\n".join(
        [md[md.index("|---|---|---|---|" if sides else "|---|---|---|") - 1]]
        + [f"| {s['title']} | **{s['verdict']}** | {s['reason']} |{short_cell(s)}"
           for s in summaries.values()]),
        links=[f"#{n}" for n in summaries])
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em;"
             "line-height:1.45}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top}"
             "figure{margin:1em 0}figure svg{max-width:100%;height:auto}code{background:#f3f3f3}")
    page = ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>dropkit: the paper's experiments ({report['mode']})</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(heading)}</h1>"
            f"<p>{inline_html(intro)} Final-epoch test errors, mean ± std over seeds; error bars "
            "are that std.</p>" + (f"<p>{inline_html(limits)}</p>" if limits else "")
            + summary + "".join(body_html) + "</body></html>\n")
    write_atomic(report_dir / "experiments.html", page)


CLAIMS_BEGIN = "<!-- claims: written by scripts/experiments --mode paper -->"


CLAIMS_END = "<!-- claims: end -->"


def claims_table(summaries, planned):
    """The README's table of the paper's claims: each verdict under both protocols, the
    experiments of `planned` whose runs are not all kept yet marked as such."""
    rows = ["| claim (Srivastava et al. 2014; concrete dropout: Gal et al. 2017) | short protocol "
            "(20 epochs, 512 wide) | the paper's protocol (100 epochs, 1024 wide, SGD) |",
            "|---|---|---|"]
    short = short_protocol_verdicts()
    for name in planned:
        s = summaries.get(name)
        title = (s or short.get(name) or {"title": "Concrete dropout: learned drop rates"})["title"]
        link = (f"docs/experiments-paper/experiments.md#{name}" if s else
                f"docs/experiments.md#{name}" if name in short else "docs/guide.md#concrete-dropout-learned-rates")
        mine = f"**{s['verdict']}**: {s['ours']}" if s else "runs not all kept yet"
        other = short[name]["verdict"] if name in short else "-"
        rows.append(f"| [{title}]({link}) | {other} | {mine} |")
    return "\n".join(rows)


def update_readme_claims(summaries, planned):
    """Replaces the README's block between CLAIMS_BEGIN and CLAIMS_END (if it has one)."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    if CLAIMS_BEGIN not in text or CLAIMS_END not in text:
        return
    head, rest = text.split(CLAIMS_BEGIN, 1)
    _, tail = rest.split(CLAIMS_END, 1)
    write_atomic(readme, head + CLAIMS_BEGIN + "\n" + claims_table(summaries, planned) + "\n"
                 + CLAIMS_END + tail)


def short_text(short):
    """The short protocol's verdict on the same claim, as a paragraph of the paper report."""
    return (f"**Short protocol** (512 wide, 15-20 epochs; docs/experiments.md): "
            f"**{short['verdict']}**. {short['ours']}; {short['reason']}.")


def inline_html(text):
    """Markdown's inline `code` and **bold** as HTML (the rest escaped)."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def md_table_html(table, links=None):
    """A Markdown table as HTML; links[k], if given, makes row k's first cell a link."""
    lines = [l for l in table.splitlines() if l.strip() and not set(l) <= set("|-")]
    out = ["<table>"]
    for k, l in enumerate(lines):
        cells = [inline_html(c.strip()) for c in l.strip().strip("|").split("|")]
        if links and k > 0:
            cells[0] = f'<a href="{links[k - 1]}">{cells[0]}</a>'
        tag = "th" if k == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def short_protocol_verdicts():
    """{experiment: {verdict, ours, reason}} of the short protocol's report (docs/, the full
    mode's stored experiments.json), for the paper protocol's report to show beside its own."""
    f = ROOT / "docs" / "experiments.json"
    if not f.exists():
        return {}
    stored = json.loads(f.read_text())["summaries"]
    return {n: {k: s[k] for k in ("title", "verdict", "ours", "reason")} for n, s in stored.items()}
