"""An HTML report of a fitted estimator on labelled images: one file, nothing external.

``report(est, X, y, path)`` writes what fastai's ``ClassificationInterpretation``
shows, in a page that opens offline and survives being e-mailed.  For a
classifier: accuracy, balanced accuracy and per-class precision/recall/F1;
the confusion matrix and the most confused pairs; the top losses and a few
correct examples per class.  For multi-label tags: subset accuracy, micro
and macro F1, per-label precision/recall/F1 and the images with the most
wrong tags.  For a regressor: R² and the mean absolute error per output,
true against predicted values, the residuals, and the worst errors.  Always:
the learning curves, a Grad-CAM overlay on every image shown, and the
parameters, backbone, weights and fit time.

Every image is an embedded, downscaled JPEG (``data:`` URI); there is no
script, and a Content-Security-Policy forbids scripts and any network
request.  Class names, file names and parameter values are user data: all
are escaped.
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.base import is_regressor
from sklearn.metrics import (balanced_accuracy_score, classification_report, confusion_matrix,
                             f1_score, mean_absolute_error, r2_score)
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from ..inputs.images import as_images
from ..inputs.targets import align_tags, label_indices
from ..utils.files import write_text
from ..utils.progress import progress

THUMBNAIL = 160  # longest side, in pixels, of the images shown

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 72em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .4em; width: 330px;
        font-size: .85em; background: #fafafa; }
.card img { width: 160px; height: 160px; object-fit: contain; background: #eee; }
.wrong { color: #b00; } .right { color: #070; }
.summary span { display: inline-block; margin-right: 2em; font-size: 1.1em; }
.muted { color: #777; font-size: .85em; }
.scroll { max-width: 100%; overflow-x: auto; }
table.compact td, table.compact th { padding: .05em .15em; font-size: .65em; }
table.compact th.name { max-width: 14em; overflow: hidden; text-overflow: ellipsis;
                        white-space: nowrap; }
"""
#: Classes beyond which the confusion matrix numbers its columns (names on hover and
#: in the row headers), so that 50 long names still fit the page.
MANY_CLASSES = 12
# No script may run and nothing may be fetched: images are data: URIs, styles inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value):
    """Escaped text of any value (user data: labels, file names, parameters)."""
    return html.escape(str(value), quote=True)


def _thumbnail(img):
    """A ``(3, h, w)`` uint8/float tensor -> PIL image with its longest side THUMBNAIL."""
    array = img.numpy() if hasattr(img, "numpy") else np.asarray(img)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)))
    pil.thumbnail((THUMBNAIL, THUMBNAIL))
    return pil


def _overlay(thumb, heatmap):
    """``thumb`` with ``heatmap`` (at the image's own size) blended on in the jet colours."""
    from matplotlib import colormaps

    heat = Image.fromarray((heatmap * 255).astype(np.uint8)).resize(thumb.size, Image.BILINEAR)
    colours = colormaps["jet"](np.asarray(heat) / 255.0)[..., :3]
    blended = 0.55 * np.asarray(thumb, dtype=np.float32) / 255 + 0.45 * colours
    return Image.fromarray((blended * 255).round().astype(np.uint8))


def _uri(write, kind):
    """A ``data:`` URI of what ``write(buffer)`` saves as image/``kind``."""
    buffer = io.BytesIO()
    write(buffer)
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _data_uri(pil):
    return _uri(lambda buffer: pil.save(buffer, format="JPEG", quality=80), "jpeg")


def _figure_uri(draw):
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    fig = Figure(figsize=(6.5, 4), dpi=90)
    draw(fig.add_subplot())
    fig.tight_layout()
    return _uri(lambda buffer: fig.savefig(buffer, format="png"), "png")


def _confusion_table(cm, names):
    peak = max(int(cm.max()), 1)
    many = len(names) > MANY_CLASSES
    # many classes: numbered columns, each name on hover and in its numbered row
    head = "".join(f'<th title="{_e(n)}">{i + 1 if many else _e(n)}</th>'
                   for i, n in enumerate(names))
    rows = []
    for i, (name, row) in enumerate(zip(names, cm)):
        cells = "".join(
            f'<td style="background: rgba(31, 119, 180, {0.85 * v / peak:.2f});'
            f'{" color: #fff;" if v / peak > 0.5 else ""}">{v}</td>' for v in row)
        label = f"{i + 1}. {_e(name)}" if many else _e(name)
        rows.append(f'<tr><th class="name" title="{_e(name)}">{label}</th>{cells}</tr>')
    compact = ' class="compact"' if many else ""
    return (f'<div class="scroll"><table id="confusion-matrix"{compact}><tr><th class="name">'
            f"true \\ predicted</th>{head}</tr>{''.join(rows)}</table></div>")


def _card(thumb_uri, overlay_uri, lines, css_id=None):
    ident = f' id="{css_id}"' if css_id else ""
    text = "<br>".join(lines)
    return (f'<div class="card"{ident}><img src="{thumb_uri}" alt="image">'
            f'<img src="{overlay_uri}" alt="Grad-CAM"><div>{text}</div></div>')


def report(clf, X, y, path="report.html", top_losses=12, examples_per_class=2, title=None,
           target_names=None):
    """Write a self-contained HTML report of a fitted estimator on the labelled images ``X, y``.

    Parameters
    ----------
    clf : TransferClassifier or TransferRegressor
        Fitted.
    X : list of paths, list of PIL images, array (n, h, w[, c]), or a pandas column
    y : array-like
        The true targets, as ``fit`` took them: labels, a multi-label
        indicator matrix (a DataFrame's columns are matched to the model's
        tags by name), or numbers.
    path : str or os.PathLike, default="report.html"
    top_losses : int, default=12
        How many of the worst-predicted images to show (worst first).
    examples_per_class : int, default=2
        Correctly classified images shown per class (the most confident; a
        classifier of one label per image only).
    title : str, optional
    target_names : list of str, optional
        Names of a multi-label classifier's label columns or of a
        regressor's outputs; default: the model's own (``classes_``,
        ``target_names_``), else their indices.

    Returns
    -------
    pathlib.Path
        The file written (atomically: a failed report leaves no half file).
    """
    check_is_fitted(clf, "net_")
    images = as_images(X)
    if not is_regressor(clf) and clf.multilabel_:
        y = align_tags(y, clf.classes_)  # a DataFrame's tags matched by name
    y = np.asarray(y)
    if len(y) != len(images):
        raise ValueError(f"X has {len(images)} images but y has {len(y)} targets.")
    started = time.perf_counter()
    steps = progress(3, "Report", unit="step", enabled=clf.verbose >= 1)
    if is_regressor(clf):
        summary, body = _regression(clf, images, y, target_names, top_losses, steps)
    elif clf.multilabel_:
        summary, body = _multilabel(clf, images, y, target_names, top_losses, steps)
    else:
        summary, body = _classification(clf, images, y, top_losses, examples_per_class, steps)
    page = _frame(clf, title, summary, body)
    steps.update(1)
    steps.close()
    target = Path(os.fspath(path))
    write_text(target, page.replace("{{seconds}}", f"{time.perf_counter() - started:.1f}"),
               "the report")
    return target


def _cards(clf, images, shown, targets, lines):
    """Cards of the images at ``shown``: thumbnail, Grad-CAM of ``targets``, ``lines(i)``."""
    heatmaps = clf.explain(images.subset(shown), target=targets) if shown else []
    cards = []
    for i, heat in zip(shown, heatmaps):
        thumb = _thumbnail(images.image(i))
        cards.append(_card(_data_uri(thumb), _data_uri(_overlay(thumb, heat)), lines(i)))
    return cards


def _file_name(images, i):
    return ([f'<span class="muted">{_e(Path(images.items[i]).name)}</span>']
            if images.kind == "paths" else [])


def _names(given, n, what):
    names = [str(c) for c in (range(n) if given is None else given)]
    if len(names) != n:
        raise ValueError(f"target_names has {len(names)} names for {n} {what}.")
    return names


def _classification(clf, images, y, top_losses, examples_per_class, steps):
    classes = clf.classes_.tolist()
    true = label_indices(y, classes)
    proba = clf.predict_proba(images)
    steps.update(1)
    pred = proba.argmax(1)
    loss = -np.log(np.clip(proba[np.arange(len(true)), true], 1e-12, 1))
    # the mistakes first, then the top_losses largest of them
    worst = [int(i) for i in np.argsort(-loss) if pred[i] != true[i]][:top_losses]
    confident = []
    for c in range(len(classes)):
        right = np.flatnonzero((true == c) & (pred == c))
        confident += [int(i) for i in right[np.argsort(-proba[right, c])][:examples_per_class]]

    def lines(i):
        verdict = "right" if pred[i] == true[i] else "wrong"
        return _file_name(images, i) + [
            f"true: <b>{_e(classes[true[i]])}</b>",
            f'predicted: <b class="{verdict}">{_e(classes[pred[i]])}</b> '
            f"({proba[i, pred[i]]:.2f})",
            f"p(true) {proba[i, true[i]]:.2f} &middot; loss {loss[i]:.2f}"]

    cards = _cards(clf, images, worst + confident, None, lines)
    steps.update(1)
    names = [str(c) for c in classes]
    labels = list(range(len(classes)))
    cm = confusion_matrix(true, pred, labels=labels)
    per_class = classification_report(true, pred, labels=labels, target_names=names,
                                      output_dict=True, zero_division=0)
    pairs = sorted(((int(cm[a, b]), a, b) for a in labels for b in labels
                    if a != b and cm[a, b]), reverse=True)[:10]
    confused = "".join(f'<tr><td class="name">{_e(names[a])}</td><td class="name">'
                       f"{_e(names[b])}</td><td>{n}</td></tr>" for n, a, b in pairs) or (
        '<tr><td class="name" colspan="3">none: every image was classified right</td></tr>')
    summary = (f"<span>accuracy <b>{np.mean(true == pred):.3f}</b></span>"
               f"<span>balanced accuracy <b>{balanced_accuracy_score(true, pred):.3f}</b></span>"
               f"<span>{len(true)} images, {len(classes)} classes</span>")
    body = f"""<h2>Per class</h2>
{_prf_table("per-class", "class", names, per_class)}

<h2>Confusion matrix</h2>
{_confusion_table(cm, names)}

<h2>Most confused</h2>
<table id="most-confused"><tr><th class="name">true</th><th class="name">predicted as</th>
<th>images</th></tr>{confused}</table>

<h2>Top losses</h2>
<p class="muted">The misclassified images the model was most sure about, each with its Grad-CAM
heatmap for the predicted class (red: where the network looked).</p>
<div class="cards" id="top-losses">{''.join(cards[:len(worst)]) or
                                    "<p>No image was misclassified.</p>"}</div>

<h2>Correct examples</h2>
<div class="cards" id="examples">{''.join(cards[len(worst):])}</div>
"""
    return summary, body


def _prf_table(ident, what, names, scores):
    rows = "".join(
        f'<tr><td class="name">{_e(n)}</td><td>{scores[n]["precision"]:.3f}</td>'
        f'<td>{scores[n]["recall"]:.3f}</td><td>{scores[n]["f1-score"]:.3f}</td>'
        f'<td>{int(scores[n]["support"])}</td></tr>' for n in names)
    return (f'<table id="{ident}"><tr><th class="name">{what}</th><th>precision</th>'
            f"<th>recall</th><th>F1</th><th>images</th></tr>{rows}</table>")


def _multilabel(clf, images, y, target_names, top_losses, steps):
    names = _names(clf.classes_ if target_names is None else target_names, clf.n_classes_,
                   "labels")
    proba = clf.predict_proba(images)
    steps.update(1)
    true, pred = y.astype(int), (proba > 0.5).astype(int)
    p = np.clip(proba, 1e-12, 1 - 1e-12)
    losses = -(true * np.log(p) + (1 - true) * np.log(1 - p))
    worst = [int(i) for i in np.argsort(-losses.sum(1)) if (pred[i] != true[i]).any()][:top_losses]

    def tags(row):
        return ", ".join(_e(names[j]) for j in np.flatnonzero(row)) or "none"

    def lines(i):
        return _file_name(images, i) + [
            f"true: <b>{tags(true[i])}</b>",
            f'predicted: <b class="wrong">{tags(pred[i])}</b>',
            f"wrong tags {int((pred[i] != true[i]).sum())} &middot; loss {losses[i].sum():.2f}"]

    # each card's heatmap: of its worst tag
    cards = _cards(clf, images, worst, [clf.classes_[losses[i].argmax()] for i in worst], lines)
    steps.update(1)
    per_label = classification_report(true, pred, target_names=names, output_dict=True,
                                      zero_division=0)
    summary = (f"<span>subset accuracy <b>{np.mean((pred == true).all(1)):.3f}</b></span>"
               f"<span>micro F1 <b>{f1_score(true, pred, average='micro', zero_division=0):.3f}"
               f"</b></span><span>macro F1 <b>"
               f"{f1_score(true, pred, average='macro', zero_division=0):.3f}</b></span>"
               f"<span>{len(true)} images, {len(names)} labels</span>")
    body = f"""<h2>Per label</h2>
{_prf_table("per-label", "label", names, per_label)}

<h2>Top losses</h2>
<p class="muted">The images with the most wrongly predicted tags, each with its Grad-CAM
heatmap for its worst tag (red: where the network looked).</p>
<div class="cards" id="top-losses">{''.join(cards) or "<p>Every tag was predicted right.</p>"}</div>
"""
    return summary, body


def _regression(clf, images, y, target_names, top_losses, steps):
    table = y.reshape(len(y), -1) if y.ndim <= 2 else y
    if y.ndim > 2 or table.shape[1] != clf.n_outputs_ or table.dtype.kind not in "biuf":
        raise ValueError(f"y must hold {clf.n_outputs_} number(s) per image, as the model was "
                         f"fitted on; got shape {y.shape} of {y.dtype}.")
    names = _names(clf.target_names_ if target_names is None else target_names,
                   clf.n_outputs_, "outputs")
    pred = clf.predict(images).reshape(len(y), -1)
    steps.update(1)
    error = pred - table
    scaled = np.abs(error) / clf.target_scale_  # in standard deviations, comparable
    worst = [int(i) for i in np.argsort(-scaled.max(1))[:top_losses]]

    def lines(i):
        return _file_name(images, i) + [
            f"{_e(names[j])}: true <b>{table[i, j]:.4g}</b>, predicted "
            f'<b class="wrong">{pred[i, j]:.4g}</b>' for j in range(len(names))]

    cards = _cards(clf, images, worst, [int(scaled[i].argmax()) for i in worst], lines)
    steps.update(1)
    rows = "".join(
        f'<tr><td class="name">{_e(n)}</td><td>{r2_score(table[:, j], pred[:, j]):.3f}</td>'
        f"<td>{mean_absolute_error(table[:, j], pred[:, j]):.4g}</td>"
        f"<td>{np.sqrt(np.mean(error[:, j] ** 2)):.4g}</td></tr>"
        for j, n in enumerate(names))
    shown = names[:MAX_PANELS]
    scatter = _panels(len(shown), lambda ax, j: _true_vs_predicted(ax, table[:, j], pred[:, j],
                                                                   shown[j]))
    residuals = _panels(len(shown), lambda ax, j: _residuals(ax, pred[:, j], error[:, j],
                                                             shown[j]))
    summary = (f"<span>R² <b>{r2_score(table, pred):.3f}</b></span>"
               f"<span>{len(table)} images, {len(names)} output"
               f"{'s' if len(names) > 1 else ''}</span>")
    more = (f'<p class="muted">The first {MAX_PANELS} of {len(names)} outputs.</p>'
            if len(names) > MAX_PANELS else "")
    body = f"""<h2>Per output</h2>
<table id="per-output"><tr><th class="name">output</th><th>R²</th><th>mean absolute error</th>
<th>root mean squared error</th></tr>{rows}</table>

<h2>True against predicted</h2>
{more}<img id="true-vs-predicted" src="{scatter}" alt="true against predicted values">

<h2>Residuals</h2>
<img id="residuals" src="{residuals}" alt="residuals against predicted values">

<h2>Worst errors</h2>
<p class="muted">The images predicted furthest from their targets (in standard deviations of
the target), each with its Grad-CAM heatmap for that output (red: where the network looked
for what raises it).</p>
<div class="cards" id="top-losses">{''.join(cards)}</div>
"""
    return summary, body


MAX_PANELS = 6  # outputs drawn in the regression figures


def _panels(n, draw):
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    columns = min(n, 3)
    rows = -(-n // columns)
    fig = Figure(figsize=(3.3 * columns, 3.0 * rows), dpi=90)
    for j in range(n):
        draw(fig.add_subplot(rows, columns, j + 1), j)
    fig.tight_layout()
    return _uri(lambda buffer: fig.savefig(buffer, format="png"), "png")


def _true_vs_predicted(ax, true, pred, name):
    ax.scatter(true, pred, s=12, alpha=0.7)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":")
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel("predicted")


def _residuals(ax, pred, error, name):
    ax.scatter(pred, error, s=12, alpha=0.7)
    ax.axhline(0, color="grey", linestyle=":")
    ax.set_xlabel(f"predicted {name}")
    ax.set_ylabel("predicted - true")


def _frame(clf, title, summary, body):
    """The page around ``body``: heading, summary, learning curves, parameters."""
    from .plots import plot_learning_curve

    curve = _figure_uri(lambda ax: plot_learning_curve(clf.history_, ax=ax))
    phases = [row.get("phase") for row in clf.history_]
    tuned = len({p for p in phases if p is not None}) > 1
    caption = ("Both phases: the head alone, then (after the dotted line) the unfrozen blocks "
               "at the fine-tuning rate." if tuned else
               "The head alone on the frozen backbone (no fine-tuning phase).")
    if any("valid_loss" in row for row in clf.history_):
        caption += " The validation loss is that of the images held out during the fit."
    params = "".join(f'<tr><td class="name">{_e(k)}</td><td class="name">{_e(v)}</td></tr>'
                     for k, v in sorted(clf.get_params(deep=False).items()))
    fit = getattr(clf, "fit_seconds_", None)
    backbone = clf.backbone if isinstance(clf.backbone, str) else type(clf.backbone).__name__
    heading = _e(title or f"sktransfer report: {backbone}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading}</title><style>{CSS}</style></head>
<body>
<h1>{heading}</h1>
<p class="summary" id="summary">{summary}</p>
<p class="muted">backbone {_e(backbone)}, weights {_e(clf.weights_)}, input
{clf.transform_.crop_size[0]} px{'' if fit is None else f', fit in {fit:.1f} s'};
report made in {{{{seconds}}}} s by sktransfer {_e(__version__)}.</p>
{body}
<h2>Learning curves</h2>
<p class="muted" id="curve-caption">{caption}</p>
<img id="learning-curve" src="{curve}" alt="learning curve">

<h2>Parameters</h2>
<table id="parameters">{params}</table>
</body></html>
"""
