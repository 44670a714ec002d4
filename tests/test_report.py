"""The HTML report: self-contained, escaped, and checked in a real headless Chromium."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("pytorch_grad_cam", reason="the report's heatmaps need the grad-cam extra")

from sktransfer import TransferClassifier, report  # noqa: E402

from conftest import blobs, requires_imagenet  # noqa: E402

EVIL = "<script>alert(1)</script>"


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium: `make test` installs Debian's chromium package (apt); it "
                    "could not be installed on this machine")
    pytest.importorskip("playwright", reason="the browser tests drive chromium with playwright")
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A report of real files, one class named like a script, some images mislabelled."""
    root = tmp_path_factory.mktemp("report")
    X, y = blobs(48, size=64, seed=3)
    labels = np.where(y == 0, EVIL, "plain & simple")
    clf = TransferClassifier(backbone="mobilenet", image_size=64, epochs=10,
                             random_state=0).fit(X[:32], labels[:32])
    paths = []
    for i, img in enumerate(X[32:]):
        # A file name is user data too.
        path = root / (f"<img src=x onerror=alert({i})>.png" if i == 0 else f"photo{i}.png")
        Image.fromarray(img).save(path)
        paths.append(str(path))
    truth = labels[32:].copy()
    truth[:4] = np.where(truth[:4] == EVIL, "plain & simple", EVIL)  # sure to be wrong
    out = report(clf, paths, truth, root / "report.html", top_losses=6)
    return out, clf, truth


@requires_imagenet  # the fixture's model uses them
def test_the_page_holds_every_part_and_no_external_reference(made):
    path, clf, truth = made
    page = path.read_text()
    for part in ('id="confusion-matrix"', 'id="top-losses"', 'id="per-class"',
                 'id="most-confused"', 'id="learning-curve"', 'id="parameters"'):
        assert part in page
    assert "balanced accuracy" in page and "mobilenet" in page
    assert "<script" not in page  # only escaped text: &lt;script&gt;
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # no external resources
    assert page.count('class="card"') >= 4 + 2  # the four mislabelled ones, and examples
    assert "&lt;img src=x onerror=alert(0)&gt;.png" in page  # mislabelled: among the top losses


def test_a_report_of_many_images_stays_small(tmp_path):
    X, y = blobs(300, size=96, seed=1)
    clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=2,
                             random_state=0).fit(X[:40], y[:40])
    out = report(clf, X, y, tmp_path / "big.html")
    assert out.stat().st_size < 1_000_000  # thumbnails of the shown images only


@requires_imagenet  # the fixture's model uses them
def test_bad_labels_are_a_clear_error(made, tmp_path):
    _, clf, _ = made
    with pytest.raises(ValueError, match="'horse'"):
        report(clf, blobs(2, size=64)[0], ["horse", EVIL], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@requires_imagenet  # the fixture's model uses them
def test_chromium_renders_it_offline_without_errors_or_script(made, tmp_path):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    path, _, _ = made
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        console, requests, dialogs = [], [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(path.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        text = page.inner_text("body")
        cards = page.eval_on_selector_all("#top-losses .card", "cs => cs.length")
        cells = page.eval_on_selector_all("#confusion-matrix td", "cs => cs.length")
        scripts = page.eval_on_selector_all("script", "s => s.length")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert console == [], console
    assert dialogs == [] and scripts == 0  # the injected label and file name did not run
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert requests[0] == path.as_uri()
    assert images and all(done and width > 0 for done, width in images), images
    assert cards >= 4 and cells == 4
    assert EVIL in text and "<img src=x onerror=alert(0)>.png" in text  # shown as text
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # not a blank page


@pytest.fixture(scope="module")
def family_reports(tmp_path_factory):
    """Reports of a regressor, a multi-label classifier and a classifier of 50 long names."""
    from sktransfer import TransferRegressor

    root = tmp_path_factory.mktemp("family")
    fast = dict(backbone="resnet18", weights=None, image_size=32, random_state=0)
    X, y = blobs(24)
    values = np.c_[400.0 + 900 * y, 80.0 - 60 * y]
    reg = TransferRegressor(**fast, epochs=5).fit(X, values)
    tags = np.c_[y, 1 - y, np.arange(24) % 3 == 0].astype(int)
    tagger = TransferClassifier(**fast, epochs=5, unfreeze=1, finetune_epochs=1).fit(X, tags)
    # tags named by a DataFrame's columns (the report used to pass their positions to explain)
    named = pd.DataFrame(tags, columns=["protein", "fat", EVIL])
    named_tagger = TransferClassifier(**fast, epochs=3).fit(X, named)
    names = np.array([f"{EVIL} a long class name, number {i} of fifty" for i in range(50)])
    X50, _ = blobs(100)
    many = TransferClassifier(**fast, epochs=1).fit(X50, names[np.arange(100) % 50])
    return {
        "regression": report(reg, X, values, root / "reg.html", top_losses=5,
                             target_names=["energy", EVIL]),
        "multilabel": report(tagger, X, tags, root / "tags.html", top_losses=5,
                             target_names=["protein", "fat", EVIL]),
        "named tags": report(named_tagger, X, named[[EVIL, "protein", "fat"]],
                             root / "named.html", top_losses=5),
        "many": report(many, X50, names[np.arange(100) % 50], root / "many.html"),
    }


def test_each_estimator_gets_its_own_report(family_reports):
    reg = family_reports["regression"].read_text()
    for part in ('id="per-output"', 'id="true-vs-predicted"', 'id="residuals"',
                 'id="top-losses"', "R² <b>"):
        assert part in reg
    assert reg.count('class="card"') == 5 and "<script" not in reg
    assert "head alone on the frozen backbone (no fine-tuning phase)" in reg
    tags = family_reports["multilabel"].read_text()
    for part in ('id="per-label"', "subset accuracy", "micro F1", "macro F1"):
        assert part in tags
    assert "after the dotted line" in tags and "<script" not in tags
    assert 'id="confusion-matrix"' not in tags and 'id="confusion-matrix"' not in reg


def test_report_targets_must_match_the_model(family_reports, tmp_path):
    from sktransfer import TransferRegressor

    X, y = blobs(8)
    reg = TransferRegressor(backbone="resnet18", weights=None, image_size=32,
                            epochs=1).fit(X, np.c_[y, y])
    with pytest.raises(ValueError, match="2 number\\(s\\) per image"):
        report(reg, X, y, tmp_path / "r.html")
    with pytest.raises(ValueError, match="target_names has 1 names for 2 outputs"):
        report(reg, X, np.c_[y, y], tmp_path / "r.html", target_names=["a"])
    assert not (tmp_path / "r.html").exists()


def test_the_reports_render_and_fit_a_1300_px_page(family_reports):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--no-sandbox", "--disable-gpu"])
        for kind, path in family_reports.items():
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            errors = []
            page.on("console", lambda m: errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            found[kind] = {
                "errors": errors,
                "images": page.eval_on_selector_all(
                    "img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"),
                "page_width": page.evaluate("document.documentElement.scrollWidth"),
                "rightmost_cell": page.eval_on_selector_all(
                    "#confusion-matrix th, #confusion-matrix td",
                    "cs => Math.max(0, ...cs.map(c => c.getBoundingClientRect().right))"),
                "cells": page.eval_on_selector_all("#confusion-matrix td", "cs => cs.length"),
                "text": page.inner_text("body"),
            }
            page.close()
        browser.close()
    for kind, seen in found.items():
        assert seen["errors"] == [] and seen["images"], (kind, seen["errors"])
        assert seen["page_width"] <= 1300, kind  # nothing wider than the page
    many = found["many"]
    assert many["cells"] == 50 * 50 and 0 < many["rightmost_cell"] <= 1300  # every column shows
    assert EVIL in found["regression"]["text"] and EVIL in found["multilabel"]["text"]
    named = found["named tags"]["text"]
    assert EVIL in named and "subset accuracy" in named
    # the cards name the tags (the DataFrame's columns were matched by name, not position)
    shown = re.findall(r"true: (.*)", named)
    assert shown and set(shown) <= {"protein", "fat", f"protein, {EVIL}", f"fat, {EVIL}"}, shown
