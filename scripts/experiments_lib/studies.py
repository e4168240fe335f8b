"""The claims read from trained models rather than from test errors alone: sparsity of the
features (figures 7, 8), Monte-Carlo averaging (figure 11), the variance shift before batch norm
(Li et al. 2019), the smoothness of training, and concrete dropout's learned rates (Gal et al.
2017). Same plan / summarize interface as sweeps.py."""

from __future__ import annotations

import math
import statistics

from .figures import ERROR_RANGE, histogram, series
from .modes import recipe
from .runs import Run, cached_json, err, fmt_ms, mean_std, metrics
from .sweeps import REGULARIZERS, base_args, cost_of, curve, rate_of


def sum_sparsity(m, runs_by_exp, ctx):
    runs = runs_by_exp["droprate"]
    pick = {p: next(r for r in runs if r.name == f"p{p:g}-s{m.seeds[0]}") for p in (0.0, 0.5)}
    stats = {}
    for p, r in pick.items():
        stats[p] = cached_json(r.dir / "activations.json",
                               ctx.dk("eval", "--model", r.dir, "--activations", 1, "--json"))["activations"]
    means = {p: stats[p]["mean"] for p in stats}
    active = {p: statistics.fmean(stats[p]["active_fraction"]) for p in stats}
    label = lambda p: "no dropout" if p == 0 else "dropout 0.5"
    hist = lambda key, title, xlabel, xrange: dict(
        kind="hist", title=title, xlabel=xlabel, ylabel="fraction", range=[0, 1], xrange=xrange,
        series=histogram([(label(p), stats[p][key]) for p in stats]))
    figs = {
        "sparsity-units": hist("unit_mean", "Mean activation per hidden unit (test set)",
                               "mean activation of a unit", [0, None]),
        "sparsity-active": hist("active_fraction", "Fraction of active (> 0) units per example",
                                "fraction of the layer's units active", [0, 1]),
    }
    ratio = means[0.5] / means[0.0] if means[0.0] else float("nan")
    sparser = active[0.5] < active[0.0]
    verdict = "held" if ratio < 0.8 and sparser else ("did not hold" if ratio >= 1 and not sparser else "partly held")
    reason = (f"mean activation {means[0.0]:.3f} without and {means[0.5]:.3f} with dropout (ratio "
              f"{ratio:.2f}; the paper's 0.7 / 2.0 = 0.35); active units per example "
              f"{active[0.0]:.3f} and {active[0.5]:.3f}")
    rows = ["| | mean activation | active fraction per example |", "|---|---|---|",
            f"| no dropout | {means[0.0]:.4f} | {active[0.0]:.4f} |",
            f"| dropout 0.5 | {means[0.5]:.4f} | {active[0.5]:.4f} |"]
    return dict(
        title="Sparse features (figures 7 and 8)",
        question="Does dropout make the hidden activations sparser?",
        paper="MNIST autoencoder, 256 hidden units: the mean activation falls from about 2.0 to "
              "about 0.7, and few units are active per example (read from the plot)",
        ours=f"the classifier's first hidden layer ({m.width} ReLU units; the `droprate` runs "
             f"p = 0 and 0.5, seed {m.seeds[0]}, test set, eval mode): mean activation "
             f"{means[0.0]:.3f} -> {means[0.5]:.3f}, active fraction {active[0.0]:.3f} -> {active[0.5]:.3f}",
        verdict=verdict, reason=reason, table="\n".join(rows), figures=figs,
        data={"mean": means, "active": active})


def sum_mc(m, runs_by_exp, ctx):
    runs = [r for r in runs_by_exp["regularizers"] if r.name.rsplit("-s", 1)[0] == "dropout"]
    sweeps, ws = [], []
    for r in runs:
        j = cached_json(r.dir / "predict.json",
                        ctx.dk("predict", "--model", r.dir, "--mc", max(m.sweep), "--sweep",
                               ",".join(map(str, m.sweep)), "--json"))
        ws.append(100 * (1 - j["deterministic"]["accuracy"]))
        sweeps.append({s["samples"]: 100 * (1 - s["accuracy"]) for s in j["sweep"]})
    wsm = mean_std(ws)
    mc = {t: mean_std(sw[t] for sw in sweeps) for t in m.sweep}
    fig = dict(kind="lines", title="Monte-Carlo averaging vs weight scaling",
               xlabel="samples T (log scale)", ylabel="test error (%)", logx=True, range=ERROR_RANGE,
               series=[series(f"Monte-Carlo (mean ± std, {len(sweeps)} seeds)",
                              [(t, *mc[t]) for t in m.sweep])],
               hlines=[dict(y=wsm[0], label="weight scaling")])
    rows = ["| samples T | MC test error % |", "|---|---|"]
    rows += [f"| {t} | {fmt_ms(*mc[t], len(sweeps))} |" for t in m.sweep]
    rows.append(f"| weight scaling | {fmt_ms(*wsm, len(ws))} |")
    big = max(m.sweep)
    # "Within noise": the same rule for the verdict at the largest T and for where MC gets there.
    noise = lambda t: max(2 * math.hypot(mc[t][1], wsm[1]), 0.15)
    at = next((t for t in m.sweep if all(mc[u][0] - wsm[0] <= noise(u) for u in m.sweep if u >= t)),
              None)
    diff = mc[big][0] - wsm[0]
    verdict = "held" if diff <= noise(big) else "did not hold"
    reason = (f"at T = {big} Monte-Carlo is {diff:+.2f} points from weight scaling (noise bound "
              f"{noise(big):.2f}); "
              + (f"it is within that bound from T = {at} on" if at else
                 "it is not within it at any T")
              + f" ({len(runs)} seeds of the `regularizers` dropout runs)")
    return dict(
        title="Monte-Carlo averaging vs weight scaling (figure 11)",
        question="Is the weight-scaling rule as good as averaging many sampled nets?",
        paper="MNIST: Monte-Carlo averaging reaches the weight-scaling error at about T = 50 "
              "samples and is only slightly better beyond (read from the plot)",
        ours=f"weight scaling {wsm[0]:.2f} %, Monte-Carlo T = {big} {mc[big][0]:.2f} %",
        verdict=verdict, reason=reason, table="\n".join(rows), figures={"mc": fig},
        data={"weight_scaling": wsm, "mc": mc})


def bn_net(w, where):
    block = lambda noise: f"dense:{w}{',' + noise if noise else ''},batchnorm,relu"
    if where == "before":
        return f"{block('dropout:0.5')},{block('dropout:0.5')},dense:10"
    return f"{block('')},{block('')},dropout:0.5,dense:10"


def plan_bn(m):
    runs = []
    for where in ("before", "after"):
        for s in m.seeds:
            runs.append(Run("bn", f"{where}-s{s}",
                            ["--net", bn_net(m.width, where), "--max-norm", "0", "--seed", str(s),
                             "--optimizer", "adam", "--lr", "0.001", "--lr-decay", "0.9",
                             *base_args(m)], m.bn_epochs, cost_of(m.width, m.bn_epochs) * 1.3))
    return runs


def sum_bn(m, runs, ctx):
    res = {}
    for where in ("before", "after"):
        ratios, errs = [], []
        for r in runs:
            if not r.name.startswith(where):
                continue
            j = cached_json(r.dir / "bn-stats.json", ctx.dk("eval", "--model", r.dir, "--bn-stats", "--json"))
            ratios.append(statistics.fmean(b["eval_over_running"] for b in j["batchnorm"]))
            errs.append(err(r))
        res[where] = {"ratio": mean_std(ratios), "error": mean_std(errs), "n": len(errs)}
    b, a = res["before"], res["after"]
    ratio_ok = abs(b["ratio"][0] - 0.5) < 0.15 and abs(a["ratio"][0] - 1.0) < 0.1
    worse = b["error"][0] - a["error"][0]
    sd = math.hypot(b["error"][1], a["error"][1])
    verdict = "held" if ratio_ok and worse > max(sd, 0.05) else (
        "partly held" if ratio_ok else "did not hold")
    reason = (f"BN's eval/running variance ratio is {b['ratio'][0]:.2f} with dropout 0.5 before BN "
              f"(predicted about 0.5) and {a['ratio'][0]:.2f} with dropout after the last BN "
              f"(predicted 1); test error {worse:+.2f} points before vs after (seed std {sd:.2f})")
    rows = ["| dropout | eval / running variance | test error % |", "|---|---|---|"]
    for where in res:
        rows.append(f"| {where} BN | {fmt_ms(*res[where]['ratio'], res[where]['n'], 3)} | "
                    f"{fmt_ms(*res[where]['error'], res[where]['n'])} |")
    fig = dict(kind="categories", title="Variance shift: BN's input variance, eval / running",
               xlabel="variance ratio (mean over BN layers and channels)", range=[0, None],
               categories=["dropout 0.5 before BN", "dropout 0.5 after the last BN"],
               series=[dict(label=f"mean ± std, {b['n']} seeds", values=[b["ratio"][0], a["ratio"][0]],
                            errors=[b["ratio"][1], a["ratio"][1]])],
               vlines=[dict(x=1.0, label="no shift (1)"), dict(x=0.5, label="keep probability 0.5")])
    return dict(
        title="The variance shift of dropout before BatchNorm (Li et al. 2019)",
        question="Does dropout before BN leave BN's running variance wrong in eval mode, and cost accuracy?",
        paper="Li et al.: ratio about 1 - p before BN; placing dropout after the last BN avoids it "
              "(the full study, 5 placements x 3 seeds, is `scripts/experiment-variance-shift`)",
        ours=f"ratio {b['ratio'][0]:.2f} before, {a['ratio'][0]:.2f} after; test error "
             f"{b['error'][0]:.2f} vs {a['error'][0]:.2f} %",
        verdict=verdict, reason=reason, table="\n".join(rows), figures={"bn": fig}, data=res)


def sum_smoothness(m, runs_by_exp, ctx):
    runs = runs_by_exp["regularizers"]
    res = {}
    for kind in ("none", "dropout"):
        stds, cvs = [], []
        for r in runs:
            if r.name.rsplit("-s", 1)[0] != kind:
                continue
            last = metrics(r)[-3:]
            stds.append(statistics.fmean(e["step_loss_std"] for e in last))
            cvs.append(statistics.fmean(e["step_loss_std"] / e["train_loss"] for e in last))
        res[kind] = {"std": mean_std(stds), "cv": mean_std(cvs), "n": len(stds)}
    curves = {}
    for kind in ("none", "dropout"):
        r = next(r for r in runs if r.name == f"{kind}-s{m.seeds[0]}")
        curves[kind] = [(e["epoch"], e["step_loss_std"], 0) for e in metrics(r)]
    fig = dict(kind="lines", title=f"Spread of the per-step training loss (seed {m.seeds[0]})",
               xlabel="epoch", ylabel="std of the step losses in the epoch", range=[0, None],
               xinteger=True, series=[series({"none": "no dropout", "dropout": "dropout 0.2 / 0.5"}[k], v)
                                      for k, v in curves.items()])
    n, d = res["none"], res["dropout"]
    ratio = d["std"][0] / n["std"][0]
    sep = d["std"][0] - n["std"][0] > 2 * math.hypot(d["std"][1], n["std"][1])
    verdict = "held" if ratio > 1 and sep else ("did not hold" if ratio <= 1 else "inconclusive")
    reason = (f"over the last 3 epochs the step losses' std is {n['std'][0]:.4f} without and "
              f"{d['std'][0]:.4f} with dropout ({ratio:.1f} times); relative to the loss "
              f"{n['cv'][0]:.2f} vs {d['cv'][0]:.2f}")
    rows = ["| | step-loss std (last 3 epochs) | std / mean loss |", "|---|---|---|"]
    for k in res:
        rows.append(f"| {k} | {fmt_ms(*res[k]['std'], res[k]['n'], 4)} | {fmt_ms(*res[k]['cv'], res[k]['n'], 3)} |")
    return dict(
        title="Loss-curve smoothness",
        question="Is the training loss noisier from step to step with dropout?",
        paper="not measured in the paper (the study notes ask); the expectation is yes, since "
              "each step samples a different thinned net",
        ours=f"step-loss std {n['std'][0]:.4f} -> {d['std'][0]:.4f}",
        verdict=verdict, reason=reason, table="\n".join(rows), figures={"smoothness": fig}, data=res)


# Concrete dropout (Gal, Hron and Kendall 2017): the rates learned from 0.1 on the input and both
# hidden layers, against the drop-rate sweep's optimum and the paper's hand-set 0.2 / 0.5, and
# the Monte-Carlo uncertainty of both, in distribution and on held-out classes.
CONCRETE_START = 0.1  # the reference code's initial rate


def concrete_net(width):
    c = f"concrete_dropout:{CONCRETE_START:g}"
    return f"{c},dense:{width}:relu,{c},dense:{width}:relu,{c},dense:10"


def plan_concrete(m):
    handset = next(net for name, net, _ in REGULARIZERS if name == "dropout + max-norm")
    extra = next(x for name, _, x in REGULARIZERS if name == "dropout + max-norm")
    predict = {"predict": ["predict", "--mc", m.mc_samples]}
    runs = []
    for s in m.seeds:
        # "handset" is the regularizers' dropout + max-norm run (the same arguments): trained once.
        for kind, net, flags in (("learned", concrete_net(m.width), ["--max-norm", f"{m.max_norm:g}"]),
                                 ("handset", handset(m.width), extra)):
            runs.append(Run("concrete", f"{kind}-s{s}",
                            ["--net", net, *flags, "--seed", str(s), *recipe(m, True), *base_args(m)],
                            m.epochs, cost_of(m.width, m.epochs), post=dict(predict)))
    for kind, net in (("learned", concrete_net(m.width)), ("handset", handset(m.width))):
        s = m.seeds[0]
        runs.append(Run("concrete", f"heldout-{kind}-s{s}",
                        ["--net", net, "--max-norm", f"{m.max_norm:g}", "--seed", str(s),
                         "--exclude-classes", m.held_out, *recipe(m, True), *base_args(m)],
                        m.epochs, cost_of(m.width, m.epochs), post=dict(predict)))
    return runs


def sum_concrete(m, runs_by_exp, ctx):
    runs = runs_by_exp["concrete"]
    of = lambda prefix: [r for r in runs if r.name.startswith(prefix) and not r.result.get("diverged")]
    learned, handset = of("learned-"), of("handset-")
    rates = [r.result["drop_rates"] for r in learned]
    layer_rates = [mean_std(rs[i] for rs in rates) for i in range(3)]
    # The drop-rate sweep's optimum, chosen on validation (never on test).
    sweep = runs_by_exp["droprate"]
    by_p = curve(sweep, rate_of, lambda r: err(r, "val_accuracy"))
    best_p = min(by_p, key=lambda p: by_p[p][0])
    best_test = mean_std(err(r) for r in sweep if rate_of(r) == best_p)
    mc = lambda r, key: r.result["post"]["predict"]["mc"][key]
    rows_of = {
        "learned (concrete dropout, from 0.1)": (learned, " / ".join(f"{v[0]:.3f}" for v in layer_rates)),
        "hand-set (the paper: 0.2 / 0.5 / 0.5)": (handset, "0.2 / 0.5 / 0.5"),
    }
    table = ["| net | drop rates (input / hidden 1 / hidden 2) | test error % | MC test error % | "
             "MC NLL | MC ECE | held-out AUROC (MI / entropy) |", "|---|---|---|---|---|---|---|"]
    res = {}
    for label, (rs, rate_text) in rows_of.items():
        kind = "learned" if label.startswith("learned") else "handset"
        held = [r for r in runs if r.name.startswith(f"heldout-{kind}-") and not r.result.get("diverged")]
        te, mce = mean_std(err(r) for r in rs), mean_std(100 * (1 - mc(r, "accuracy")) for r in rs)
        nll, ece = mean_std(mc(r, "nll") for r in rs), mean_std(mc(r, "ece") for r in rs)
        auroc = [(mc(r, "ood_auroc")["mutual_information"], mc(r, "ood_auroc")["entropy"]) for r in held]
        res[kind] = dict(test=te, mc_test=mce, nll=nll, ece=ece, auroc=auroc, n=len(rs))
        au = " / ".join(f"{a:.3f}" for a in auroc[0]) if auroc else "-"
        table.append(f"| {label} | {rate_text} | {fmt_ms(*te, len(rs))} | {fmt_ms(*mce, len(rs))} | "
                     f"{fmt_ms(*nll, len(rs), 3)} | {fmt_ms(*ece, len(rs), 3)} | {au} |")
    table.append(f"| drop-rate sweep's best on validation | 0 / {best_p:g} / {best_p:g} | "
                 f"{fmt_ms(*best_test, by_p[best_p][2])} | - | - | - | - |")
    tuned = min((res["handset"]["test"], "the hand-set rates"), (best_test, f"the sweep's p = {best_p:g}"))
    diff = res["learned"]["test"][0] - tuned[0][0]
    noise = max(2 * math.hypot(res["learned"]["test"][1], tuned[0][1]), 0.15)
    # Uncertainty: the Monte-Carlo NLL must not be worse than the hand-set rates' beyond noise.
    nll_diff = res["learned"]["nll"][0] - res["handset"]["nll"][0]
    nll_noise = max(2 * math.hypot(res["learned"]["nll"][1], res["handset"]["nll"][1]), 0.01)
    accurate, calibrated = diff <= noise, nll_diff <= nll_noise
    verdict = ("held" if accurate and calibrated else
               "partly held" if accurate or calibrated else "did not hold")
    reason = (f"learned rates {layer_rates[0][0]:.3f} (input), {layer_rates[1][0]:.3f} and "
              f"{layer_rates[2][0]:.3f} (hidden) against the sweep's best hidden rate {best_p:g}; test "
              f"error {res['learned']['test'][0]:.2f} % learned vs {tuned[0][0]:.2f} % with {tuned[1]} "
              f"({diff:+.2f} points, noise bound {noise:.2f}); MC NLL {res['learned']['nll'][0]:.3f} vs "
              f"{res['handset']['nll'][0]:.3f} ({nll_diff:+.3f}, noise bound {nll_noise:.3f}), ECE "
              f"{res['learned']['ece'][0]:.3f} vs {res['handset']['ece'][0]:.3f} (learned vs hand-set)")
    if res["learned"]["auroc"] and res["handset"]["auroc"]:
        reason += (f"; held-out classes {m.held_out} found with AUROC {res['learned']['auroc'][0][0]:.3f} vs "
                   f"{res['handset']['auroc'][0][0]:.3f} (mutual information, one seed)")
    cats = ["learned", "hand-set", f"sweep p = {best_p:g}"]
    vals = [res["learned"]["test"], res["handset"]["test"], best_test]
    fig = dict(kind="categories", title="Learned against hand-set drop rates", xlabel="test error (%)",
               range=ERROR_RANGE, categories=cats,
               series=[dict(label=f"final-epoch test error (mean ± std, {len(m.seeds)} seeds)",
                            values=[v[0] for v in vals], errors=[v[1] for v in vals])])
    return dict(
        title="Concrete dropout: drop rates that learn themselves",
        question="Does a drop rate learned by concrete dropout match a tuned one, in accuracy and "
                 "in Monte-Carlo uncertainty?",
        paper="Gal, Hron and Kendall (2017): rates learned per layer (lower on the input than on "
              "the hidden layers, falling as the training set grows) give the accuracy and the "
              "calibrated uncertainty of a grid search over hand-set rates, without the search "
              "(read from the paper's MNIST and UCI experiments)",
        ours=f"learned rates {layer_rates[0][0]:.3f} (input), {layer_rates[1][0]:.3f} and "
             f"{layer_rates[2][0]:.3f} (hidden; the sweep's best {best_p:g}); test error "
             f"{res['learned']['test'][0]:.2f} % learned, {res['handset']['test'][0]:.2f} % hand-set",
        verdict=verdict, reason=reason, table="\n".join(table), figures={"concrete": fig},
        data={"rates": layer_rates, "best_p": best_p, "res": res})
