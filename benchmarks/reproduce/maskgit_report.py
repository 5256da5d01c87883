"""Tables and figure of ``benchmarks/reproduce/maskgit.py``'s results: BENCHMARKS.md's generated MaskGIT
tables, the codebook-study plot.

    python -m benchmarks.reproduce.maskgit_report --root runs/bench_maskgit [--figure docs/codebook_study.png] \
        [--copy-to benchmarks/results]

Reads ``ROOT/results_main.json`` and ``ROOT/results_study.json`` (either may be missing or partial: what is
there is reported), replaces the ``maskgit-tables`` section of BENCHMARKS.md, and with ``--copy-to`` keeps
both JSON files beside the other benchmark results.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import write_section

COMMAND = "python -m benchmarks.reproduce.maskgit --part main; python -m benchmarks.reproduce.maskgit --part study"


def _mean_sd(values: list[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{fmt.format(statistics.mean(values))} ({fmt.format(sd)})"


def tokenizer_table(toks: dict[str, Any]) -> list[str]:
    f, v = toks.get("main_fsq"), toks.get("main_vq")
    if not (f and v):
        return []
    rows = [("PSNR (dB)", lambda r: f"{r['psnr']:.2f} ± {r['psnr_ci95']:.2f}"),
            ("SSIM", lambda r: f"{r['ssim']:.3f} ± {r['ssim_ci95']:.3f}"),
            ("FCD of reconstructions", lambda r: f"{r['fcd_reconstruction']:.2f}"),
            (f"codebook usage on test tokens ({f['tokens_counted']:,} tokens)", lambda r: f"{100 * r['usage']:.1f}%"),
            ("perplexity / index entropy", lambda r: f"{r['perplexity']:.0f} / {r['entropy_bits']:.2f} bits")]
    out = [f"Tokenizers ({f['train_steps']} steps each; test[:{f['images']}]; ± is a 95% interval over images):", "",
           f"| | FSQ {f['levels']} ({f['codebook_size']} codes) | VQ, {v['codebook_size']} codes (EMA, dead-code "
           f"threshold {v['dead_code_threshold']:.3g}) | paper (ImageNet 256) usage FSQ / VQ |", "| --- | --- | --- | --- |"]
    for label, cell in rows:
        out.append(f"| {label} | {cell(f)} | {cell(v)} | {'100% / 81%' if 'usage' in label else ''} |")
    return out + [""]


def tuning_table(tuning: dict[str, Any]) -> list[str]:
    if not all(k in tuning for k in ("main_fsq", "main_vq")):
        return []
    out = ["Sampling settings tuned on a validation split (FCD / class accuracy per setting, temperature 1.0):", "",
           "| noise, guidance | FSQ | VQ |", "| --- | --- | --- |"]
    for f, v in zip(tuning["main_fsq"]["grid"], tuning["main_vq"]["grid"]):
        out.append(f"| {f['noise']}, {f['guidance']} | {f['fcd']:.1f} / {f['class_accuracy']:.2f} | "
                   f"{v['fcd']:.1f} / {v['class_accuracy']:.2f} |")
    best = {q: tuning[f"main_{q}"]["best"] for q in ("fsq", "vq")}
    return out + ["", "Chosen: " + "; ".join(f"{q.upper()} noise {b['noise']}, guidance {b['guidance']}"
                                             for q, b in best.items()), ""]


def generation_table(gen: dict[str, Any], incep: dict[str, Any], pooled: dict[str, Any]) -> list[str]:
    runs = {q: [r for k, r in sorted(gen.items()) if k.startswith(f"main_{q}/")] for q in ("fsq", "vq")}
    if not all(runs.values()):
        return []
    f0 = runs["fsq"][0]
    n, seeds = f0["num"], min(len(runs["fsq"]), len(runs["vq"]))
    cell = {q: {"fcd": _mean_sd([r["classifier"]["frechet_distance"] for r in rs]),
                "ci": "[{:.1f}, {:.1f}]".format(*rs[0]["classifier"]["interval95"]),
                "pr": "{:.3f} / {:.3f}".format(statistics.mean(r["classifier"]["precision"] for r in rs),
                                                statistics.mean(r["classifier"]["recall"] for r in rs)),
                "acc": _mean_sd([r["class_accuracy"] for r in rs], "{:.3f}"),
                "usage": _mean_sd([100 * r["tokens"]["usage"] for r in rs]) + "%",
                "incep": f"{incep[f'main_{q}']['frechet_distance']:.1f}" if f"main_{q}" in incep else "-",
                "pooled": (f"{pooled[f'main_{q}']['classifier']['frechet_distance']:.1f}" if f"main_{q}" in pooled else "-")}
            for q, rs in runs.items()}
    floor = f0["classifier"]["floor"]
    inc_n = incep.get("main_fsq", {}).get("num", "-")
    inc_floor = f"{incep['main_fsq']['floor']:.1f}" if "main_fsq" in incep else "-"
    pn = pooled.get("main_fsq", {}).get("num", "-")
    pooled_floor = f"{pooled['main_fsq']['classifier']['floor']:.2f}" if "main_fsq" in pooled else "-"
    rows = [(f"FCD, mean (sd) over {seeds} seeds", "fcd", f"{floor:.2f}", ""),
            (f"FCD of the {seeds} seeds' samples pooled (N={pn}, against test[:{pn}])", "pooled", pooled_floor, ""),
            ("FCD 95% bootstrap interval, seed 0", "ci", "", ""),
            ("precision / recall (k=3), mean", "pr", "", ""),
            ("class accuracy under the classifier, mean (sd)", "acc", "", ""),
            (f"codebook usage of the samples ({f0['tokens']['tokens_counted']:,} tokens), mean (sd)", "usage", "", "100% / 81%"),
            (f"Inception FID, N={inc_n}, seed 0", "incep", inc_floor, "4.53 / 4.51 (N=50k)")]
    out = [f"MaskGIT samples: {n:,} conditional samples per seed; seed s = MaskGIT training seed s, sampled with "
           f"seed s; scored against test[:{n}]; the floor is train[55000:{55000 + n}] against the same reference:", "",
           "| | FSQ | VQ | real-vs-real floor | paper FSQ / VQ (ImageNet) |", "| --- | --- | --- | --- | --- |"]
    out += [f"| {label} | {cell['fsq'][k]} | {cell['vq'][k]} | {fl} | {paper} |" for label, k, fl, paper in rows]
    return out + [""]


def study_table(study: dict[str, Any]) -> list[str]:
    toks, gen = study.get("tokenizers", {}), study.get("generation", {})
    sizes = sorted({r["codebook_size"] for r in toks.values() if r["quantizer"] == "fsq"})
    if not sizes:
        return []
    by = {(r["quantizer"], r["codebook_size"]): (k, r) for k, r in toks.items()}
    steps, n = next(iter(toks.values()))["train_steps"], next(iter(toks.values()))["tokens_counted"]
    out = [f"Codebook-size study (tokenizers {steps} steps each; {n:,} test tokens, so uniform use of K codes reaches "
           f"at most 1 - e^(-N/K); MaskGIT FCD / class accuracy on {next(iter(gen.values()))['num'] if gen else '-'} "
           "samples, one seed, the same sampling setting for both):", "",
           "| codes FSQ / VQ | FSQ levels | PSNR FSQ / VQ (dB) | usage FSQ / VQ | uniform-use bound | entropy FSQ / VQ "
           "(bits/token) | MaskGIT FCD FSQ / VQ | class accuracy FSQ / VQ |", "| ---: | --- | --- | --- | ---: | --- | --- | --- |"]
    for k in sizes:
        (fk, f) = by[("fsq", k)]
        vk, v = by.get(("vq", k), (None, None))
        if v is None:
            continue
        gf, gv = gen.get(f"{fk}/seed0"), gen.get(f"{vk}/seed0")
        mg = (f"{gf['classifier']['frechet_distance']:.1f} / {gv['classifier']['frechet_distance']:.1f}",
              f"{gf['class_accuracy']:.3f} / {gv['class_accuracy']:.3f}") if gf and gv else ("-", "-")
        out.append(f"| {k} / {v['codebook_size']} | {f['levels']} | {f['psnr']:.2f} / {v['psnr']:.2f} | "
                   f"{f['usage']:.3f} / {v['usage']:.3f} | {f['uniform_usage_bound']:.3f} | "
                   f"{f['entropy_bits']:.2f} / {v['entropy_bits']:.2f} | {mg[0]} | {mg[1]} |")
    return out + [""]


def times_line(main: dict[str, Any], study: dict[str, Any]) -> list[str]:
    parts = [f"{part} {stage} {s / 60:.1f} min" for part, r in (("main", main), ("study", study))
             for stage, s in r.get("stage_seconds", {}).items() if s >= 1]
    return ["Stage wall times, as each stage's last invocation recorded them (a stage resumed after an interruption "
            "counts only its last part; the two parts ran side by side on the 2 cores): " + "; ".join(parts) + "."] if parts else []


def figure(study: dict[str, Any], path: Path) -> None:
    """Usage, PSNR, index entropy and (where trained) MaskGIT FCD of the study against log2(codebook size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    toks, gen = study["tokenizers"], study.get("generation", {})
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    for q, style in (("fsq", "o-"), ("vq", "s--")):
        rows = sorted(((k, r) for k, r in toks.items() if r["quantizer"] == q), key=lambda kr: kr[1]["codebook_size"])
        x = [math.log2(r["codebook_size"]) for _, r in rows]
        for ax, key in zip(axes, ("usage", "psnr", "entropy_bits")):
            ax.plot(x, [r[key] for _, r in rows], style, label=q.upper())
        g = [(math.log2(r["codebook_size"]), gen[f"{k}/seed0"]["classifier"]["frechet_distance"])
             for k, r in rows if f"{k}/seed0" in gen]
        if g:
            axes[3].plot(*zip(*g), style, label=q.upper())
    rows = sorted((r for r in toks.values() if r["quantizer"] == "fsq"), key=lambda r: r["codebook_size"])
    x = [math.log2(r["codebook_size"]) for r in rows]
    axes[0].plot(x, [r["uniform_usage_bound"] for r in rows], ":", color="grey", label="uniform-use bound")
    axes[2].plot(x, x, ":", color="grey", label="log2(codebook size)")
    titles = (f"codebook usage ({rows[0]['tokens_counted']:,} test tokens)", "reconstruction PSNR (dB)",
              "index entropy (bits/token)", "MaskGIT FCD (lower is better)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("log2(codebook size)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Fashion-MNIST (28x28 -> 7x7 tokens; tokenizers {rows[0]['train_steps']} steps): FSQ vs VQ with "
                 "dead-code restarts at the FSQ paper's codebook sizes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="runs/bench_maskgit")
    p.add_argument("--figure", default=None, help="write the codebook-study plot here (PNG)")
    p.add_argument("--copy-to", default=None, help="copy results_main.json / results_study.json into this folder")
    args = p.parse_args(argv)
    root = Path(args.root)
    load = lambda name: json.loads((root / name).read_text()) if (root / name).is_file() else {}  # noqa: E731
    main_r, study = load("results_main.json"), load("results_study.json")
    if not (main_r or study):
        p.error(f"--root {root}: no results_main.json or results_study.json; run python -m benchmarks.reproduce.maskgit first")
    lines = [f"Generated by `python -m benchmarks.reproduce.maskgit_report` from `{COMMAND}`.", ""]
    lines += tokenizer_table(main_r.get("tokenizers", {})) + tuning_table(main_r.get("tuning", {}))
    lines += generation_table(main_r.get("generation", {}), main_r.get("inception", {}), main_r.get("pooled", {}))
    lines += study_table(study) + times_line(main_r, study)
    write_section("maskgit-tables", "\n".join(lines))
    if args.figure and study.get("tokenizers"):
        figure(study, Path(args.figure))
    if args.copy_to:
        for name in ("results_main.json", "results_study.json"):
            if (root / name).is_file():
                shutil.copy(root / name, Path(args.copy_to) / f"maskgit_{name.removeprefix('results_')}")
    print("wrote BENCHMARKS.md section maskgit-tables" + (f" and {args.figure}" if args.figure else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
