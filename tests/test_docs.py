"""The README and docs/: every example runs and shows what it says; every number is generated.

Every ```python block runs, in order, on tiny photos (blocks fenced
```python no-run need a cluster and are left out).  ``expression  # -> value``
(or an expression followed by a line ``# -> value``) is checked: the
expression must equal the value.  Measured numbers live only in sections
rendered from ``benchmarks/results/*.json`` by ``benchmarks/render_docs.py``.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import blobs, requires_imagenet

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
SHOWN = re.compile(r"#\s*->\s*(.+)$")


def with_checks(code):
    """``code`` with each shown value turned into an assertion on the expression before it."""
    lines = code.splitlines()
    tree = ast.parse(code)
    out = list(lines)
    for node in tree.body:
        if not isinstance(node, ast.Expr):
            continue
        last = node.end_lineno  # 1-based
        following = SHOWN.match(lines[last].strip()) if last < len(lines) else None
        shown = SHOWN.search(lines[last - 1]) or following
        if shown is None:
            continue
        expr = ast.get_source_segment(code, node)
        out[node.lineno - 1] = f"__check__(({expr}), ({shown.group(1)}), {expr!r})"
        for i in range(node.lineno, last):
            out[i] = ""
    return "\n".join(out)


def _check(value, expected, source):
    if isinstance(value, (list, tuple)) and all(isinstance(v, float) for v in expected):
        assert list(value) == pytest.approx(list(expected)), source
    else:
        assert value == expected, f"{source} gave {value!r}, the docs show {expected!r}"


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
    namespace = {"__check__": _check}
    for i, code in enumerate(BLOCK.findall(doc.read_text())):
        try:
            exec(compile(with_checks(code), f"{doc.name}[block {i}]", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{doc.name}, python block {i} failed: {exc!r}\n{code}")


def test_shown_values_are_checked():
    namespace = {"__check__": _check}
    exec(with_checks("x = 2\nx + 1  # -> 3\n[x,\n x]\n# -> [2, 2]"), namespace)
    with pytest.raises(AssertionError, match="gave 3"):
        exec(with_checks("x = 2\nx + 1  # -> 4"), namespace)


def test_generated_sections_match_their_results_json():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render_docs.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


MEASUREMENT = re.compile(
    r"\b\d+(\.\d+)?\s?(%|×|x\b|points?\b|seconds?\b|s\b|min\b|minutes?\b|img/s|"
    r"images/s|MB\b|GB\b|ms\b)")
GENERATED = re.compile(r"<!-- generated: ([\w-]+) .*?<!-- end generated: \1 -->", re.S)
FENCE = re.compile(r"```.*?```", re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_no_measured_number_is_typed_by_hand(doc):
    prose = FENCE.sub("", GENERATED.sub("", doc.read_text()))
    found = [m.group(0) for m in MEASUREMENT.finditer(prose)]
    assert not found, f"{doc.name}: numbers outside generated sections: {found}"
