"""An HTML report of a fitted classifier on labelled images: one file, nothing external.

``report(clf, X, y, path)`` writes what fastai's ``ClassificationInterpretation``
shows, in a page that opens offline and survives being e-mailed: accuracy,
balanced accuracy and per-class precision/recall/F1; the confusion matrix and
the most confused pairs; the learning curves of both phases; the top losses
and a few correct examples per class, each with its Grad-CAM overlay; the
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
from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .data import as_images
from .files import write_text
from .progress import progress

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
"""
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
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for name, row in zip(names, cm):
        cells = "".join(
            f'<td style="background: rgba(31, 119, 180, {0.85 * v / peak:.2f});'
            f'{" color: #fff;" if v / peak > 0.5 else ""}">{v}</td>' for v in row)
        rows.append(f'<tr><th class="name">{_e(name)}</th>{cells}</tr>')
    return (f'<table id="confusion-matrix"><tr><th class="name">true \\ predicted</th>{head}'
            f"</tr>{''.join(rows)}</table>")


def _card(thumb_uri, overlay_uri, lines, css_id=None):
    ident = f' id="{css_id}"' if css_id else ""
    text = "<br>".join(lines)
    return (f'<div class="card"{ident}><img src="{thumb_uri}" alt="image">'
            f'<img src="{overlay_uri}" alt="Grad-CAM"><div>{text}</div></div>')


def report(clf, X, y, path="report.html", top_losses=12, examples_per_class=2, title=None):
    """Write a self-contained HTML report of ``clf`` on the labelled images ``X, y``.

    Parameters
    ----------
    clf : TransferClassifier
        Fitted.
    X : list of paths, list of PIL images, array (n, h, w[, c]), or a pandas column
    y : array-like of labels
    path : str or os.PathLike, default="report.html"
    top_losses : int, default=12
        How many of the worst-predicted images to show (highest loss first).
    examples_per_class : int, default=2
        Correctly classified images shown per class (the most confident).
    title : str, optional

    Returns
    -------
    pathlib.Path
        The file written (atomically: a failed report leaves no half file).
    """
    check_is_fitted(clf, "net_")
    images = as_images(X)
    y = np.asarray(y)
    if len(y) != len(images):
        raise ValueError(f"X has {len(images)} images but y has {len(y)} labels.")
    classes = clf.classes_.tolist()
    unknown = sorted({v for v in y.tolist() if v not in classes}, key=str)
    if unknown:
        raise ValueError(f"y has labels the model does not know: {unknown[:10]!r}; its classes "
                         f"are {classes!r}.")
    started = time.perf_counter()
    steps = progress(3, "Report", unit="step", enabled=clf.verbose >= 1)
    proba = clf.predict_proba(images)
    steps.update(1)
    index = {c: i for i, c in enumerate(classes)}
    true = np.array([index[v] for v in y.tolist()])
    pred = proba.argmax(1)
    loss = -np.log(np.clip(proba[np.arange(len(true)), true], 1e-12, 1))
    worst = [int(i) for i in np.argsort(-loss)[:top_losses] if pred[i] != true[i]]
    confident = []
    for c in range(len(classes)):
        right = np.flatnonzero((true == c) & (pred == c))
        confident += [int(i) for i in right[np.argsort(-proba[right, c])][:examples_per_class]]
    shown = worst + confident
    heatmaps = clf.explain(images.subset(shown)) if shown else []
    steps.update(1)
    cards = {}
    for i, heat in zip(shown, heatmaps):
        thumb = _thumbnail(images.image(i))
        cards[i] = (_data_uri(thumb), _data_uri(_overlay(thumb, heat)))

    def lines(i):
        name = [f'<span class="muted">{_e(Path(images.items[i]).name)}</span>'] \
            if images.kind == "paths" else []
        verdict = "right" if pred[i] == true[i] else "wrong"
        return name + [f"true: <b>{_e(classes[true[i]])}</b>",
                       f'predicted: <b class="{verdict}">{_e(classes[pred[i]])}</b> '
                       f"({proba[i, pred[i]]:.2f})",
                       f"p(true) {proba[i, true[i]]:.2f} &middot; loss {loss[i]:.2f}"]

    page = _page(clf, classes, true, pred, worst, confident, cards, lines, title)
    steps.update(1)
    steps.close()
    target = Path(os.fspath(path))
    write_text(target, page.replace("{{seconds}}", f"{time.perf_counter() - started:.1f}"),
               "the report")
    return target


def _page(clf, classes, true, pred, worst, confident, cards, lines, title):
    names = [str(c) for c in classes]
    labels = range(len(classes))
    cm = confusion_matrix(true, pred, labels=list(labels))
    per_class = classification_report(true, pred, labels=list(labels), target_names=names,
                                      output_dict=True, zero_division=0)
    rows = "".join(
        f'<tr><td class="name">{_e(n)}</td><td>{per_class[n]["precision"]:.3f}</td>'
        f'<td>{per_class[n]["recall"]:.3f}</td><td>{per_class[n]["f1-score"]:.3f}</td>'
        f'<td>{int(per_class[n]["support"])}</td></tr>' for n in names)
    pairs = sorted(((int(cm[a, b]), a, b) for a in labels for b in labels
                    if a != b and cm[a, b]), reverse=True)[:10]
    confused = "".join(f'<tr><td class="name">{_e(names[a])}</td><td class="name">'
                       f"{_e(names[b])}</td><td>{n}</td></tr>" for n, a, b in pairs) or (
        '<tr><td class="name" colspan="3">none: every image was classified right</td></tr>')
    from .plots import plot_learning_curve

    curve = _figure_uri(lambda ax: plot_learning_curve(clf.history_, ax=ax))
    losses = "".join(_card(*cards[i], lines(i)) for i in worst) or (
        "<p>No image was misclassified.</p>")
    examples = "".join(_card(*cards[i], lines(i)) for i in confident)
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
<p class="summary" id="summary"><span>accuracy <b>{np.mean(true == pred):.3f}</b></span>
<span>balanced accuracy <b>{balanced_accuracy_score(true, pred):.3f}</b></span>
<span>{len(true)} images, {len(classes)} classes</span></p>
<p class="muted">backbone {_e(backbone)}, weights {_e(clf.weights_)}, input
{clf.transform_.crop_size[0]} px{'' if fit is None else f', fit in {fit:.1f} s'};
report made in {{{{seconds}}}} s by sktransfer {_e(__version__)}.</p>

<h2>Per class</h2>
<table id="per-class"><tr><th class="name">class</th><th>precision</th><th>recall</th>
<th>F1</th><th>images</th></tr>{rows}</table>

<h2>Confusion matrix</h2>
{_confusion_table(cm, names)}

<h2>Most confused</h2>
<table id="most-confused"><tr><th class="name">true</th><th class="name">predicted as</th>
<th>images</th></tr>{confused}</table>

<h2>Learning curves</h2>
<p class="muted">Both phases: the head alone, then (after the dotted line) the unfrozen blocks
at the fine-tuning rate.</p>
<img id="learning-curve" src="{curve}" alt="learning curve">

<h2>Top losses</h2>
<p class="muted">The misclassified images the model was most sure about, each with its Grad-CAM
heatmap for the predicted class (red: where the network looked).</p>
<div class="cards" id="top-losses">{losses}</div>

<h2>Correct examples</h2>
<div class="cards" id="examples">{examples}</div>

<h2>Parameters</h2>
<table id="parameters">{params}</table>
</body></html>
"""
