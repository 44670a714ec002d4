"""Every ```python block of the README and docs/ runs, in order, on tiny photos.

Blocks fenced ```python no-run (they need a cluster) are left out.
"""

import re
from pathlib import Path

import pytest
from PIL import Image

from conftest import blobs, requires_imagenet

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def make_photos(folder):
    X, y = blobs(12, size=64)
    for i, (img, label) in enumerate(zip(X, y)):
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"class_{label}" / f"{i}.jpg")


@requires_imagenet  # the examples use the default, real ImageNet weights
@pytest.mark.parametrize("doc", [d for d in DOCS if BLOCK.search(d.read_text())],
                         ids=lambda d: d.name)
def test_code_blocks_run(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    make_photos(tmp_path / "photos")
    namespace = {}
    for i, code in enumerate(BLOCK.findall(doc.read_text())):
        try:
            exec(compile(code, f"{doc.name}[block {i}]", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{doc.name}, python block {i} failed: {exc!r}\n{code}")
