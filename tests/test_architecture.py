"""The module structure of docs/architecture.md: one direction of imports, no cycles."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sktransfer

PACKAGE = Path(sktransfer.__file__).parent

# Lowest first: a module may import only modules of earlier layers.
LAYERS = [
    {"allocator", "engines", "files", "preprocess", "rng", "shapes", "stored_params"},
    {"_version", "_validation", "catalog", "data", "demo_data", "folding", "network",
     "progress", "records", "tables", "views"},
    {"decoding", "weights"},
    {"timm_family", "torchvision_family"},
    {"backbones", "cut"},
    {"cache"},
    {"extractor"},
    {"callbacks", "explain", "extractor_mixin", "persist", "plots"},
    {"base", "features"},
    {"classifier", "regressor"},
    {"cluster", "loading", "report"},
    {"cli"},
]
LAYER = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def imports(module):
    """The package modules ``module`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import name: a module, or a public name of __init__
                for alias in node.names:
                    found.add(alias.name if (PACKAGE / f"{alias.name}.py").exists()
                              else sktransfer._PUBLIC[alias.name])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sktransfer"):
            found.add((node.module.split(".") + ["__init__"])[1])
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYER)


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_one_way(module):
    wrong = {m for m in imports(module) if LAYER.get(m, len(LAYERS)) >= LAYER[module]}
    assert not wrong, f"{module} imports {sorted(wrong)}, which are not below it"


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    done, active = set(), []

    def visit(m):
        assert m not in active, f"import cycle: {' -> '.join(active + [m])}"
        if m in done:
            return
        active.append(m)
        for dep in graph.get(m, ()):
            visit(dep)
        active.pop()
        done.add(m)

    for m in MODULES:
        visit(m)


def test_each_module_imports_on_its_own():
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    for key in [k for k in sys.modules if k.startswith('sktransfer')]:\n"
        "        del sys.modules[key]\n"
        "    importlib.import_module('sktransfer.' + name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_public_names_only_in_the_package(tmp_path):
    assert set(sktransfer.__all__) == set(sktransfer._PUBLIC)
    for name in sktransfer.__all__:
        assert getattr(sktransfer, name).__doc__, f"{name} has no docstring"


def test_plots_leave_the_matplotlib_backend_alone():
    import matplotlib

    from sktransfer import plot_confusion_matrix

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_confusion_matrix(["a", "b", "a"], ["a", "b", "b"])
        assert matplotlib.get_backend() == "svg"
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
        matplotlib.use(before)


def test_the_table_of_docs_architecture_lists_each_modules_imports():
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for module in MODULES:
        if module in ("cli", "_version"):  # cli: everything; _version: no row
            continue
        row = re.search(rf"^\| `{module}` \|.*\| (.*) \|$", doc, re.M)
        assert row, f"docs/architecture.md has no row for {module}"
        listed = set(re.findall(r"`(\w+)`", row.group(1)))
        assert listed == imports(module) - {"__init__", "_version"}, module
