"""The module structure of docs/architecture.md: one direction of imports, no cycles."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import sktransfer

PACKAGE = Path(sktransfer.__file__).parent

# The folders, lowest first: a module imports only modules of its own folder or of
# folders before it ("" is the top level: the estimators and what ties them).
FOLDERS = ["utils", "inputs", "backbones", "extraction", "training", "persistence",
           "inspection", "", "cli"]


def module_name(path):
    """``backbones/cut.py`` -> ``backbones.cut``; a package's ``__init__`` -> the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULE_FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
                if p != PACKAGE / "__init__.py" and p.name != "__main__.py"}  # __main__ runs
MODULES = sorted(MODULE_FILES)


def folder(module):
    return module.split(".")[0] if "." in module or module in FOLDERS else ""


def resolve(module, level, target):
    """The module a relative import names (``from ..utils import files``: level 2)."""
    is_package = MODULE_FILES[module].name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *(target.split(".") if target else [])])


def imports(module):
    """The package modules ``module`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(MODULE_FILES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = resolve(module, node.level, node.module)
            for alias in node.names:  # a module of a folder, a public name, or a module's name
                child = f"{target}.{alias.name}".strip(".")
                if child in MODULE_FILES:
                    found.add(child)
                elif target == "" and alias.name in sktransfer._PUBLIC:
                    found.add(sktransfer._PUBLIC[alias.name])
                else:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sktransfer."):
            found.add(node.module.removeprefix("sktransfer."))
    return {m for m in found if m}  # "": the package's public names, counted above


def test_every_module_is_in_a_folder_of_the_layout():
    assert {folder(m) for m in MODULES} == set(FOLDERS)
    top = {m for m in MODULES if folder(m) == ""}
    assert top <= {"base", "classifier", "regressor", "features", "cluster", "loading",
                   "mlflow", "caches", "_validation", "_docstrings", "_version"}, top


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_one_way(module):
    rank = FOLDERS.index(folder(module))
    # _version: one string, which every layer may print
    wrong = {m for m in imports(module) - {"_version"} if FOLDERS.index(folder(m)) > rank}
    assert not wrong, f"{module} imports {sorted(wrong)}, which are above it"


@pytest.mark.parametrize("module", MODULES)
def test_modules_hold_one_job_at_a_readable_size(module):
    lines = len(MODULE_FILES[module].read_text().splitlines())
    assert lines <= 620, f"{module} has {lines} lines: split it by job"


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


# Two checks that need a process of their own share one (an interpreter importing torch
# costs seconds): each runs on its own, and the test of each reads its outcome.
FRESH = f"""
import importlib, json, sys, traceback
outcome = {{}}
try:
    for name in {MODULES!r}:
        for key in [k for k in sys.modules if k.startswith('sktransfer')]:
            del sys.modules[key]
        importlib.import_module('sktransfer.' + name)
    outcome['each_module'] = None
except Exception:
    outcome['each_module'] = traceback.format_exc()
for key in [k for k in sys.modules if k.startswith('sktransfer')]:
    del sys.modules[key]
try:
    import pickle, numpy as np, sktransfer
    from sktransfer.callbacks import PartialUnfreeze, KeepBest
    from sktransfer.cluster import fill_cache, predict_partitions
    import sktransfer.data, sktransfer.network, sktransfer.extractor, sktransfer.persist
    assert sktransfer.network.TransferNet is sktransfer.training.network.TransferNet
    assert callable(sktransfer.report)
    data = 'tests/data/'
    X = np.load(data + 'inputs.npy')
    expected = np.load(data + 'classifier-0.1.0-proba.npy')
    with open(data + 'classifier-0.1.0.pkl', 'rb') as f:
        pickled = pickle.load(f)
    loaded = sktransfer.load(data + 'classifier-0.1.0.sktransfer')
    for model in (pickled, loaded):
        np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-6)
        assert list(model.classes_) == ['a', 'b']
    outcome['old_paths'] = None
except Exception:
    outcome['old_paths'] = traceback.format_exc()
print(json.dumps(outcome))
"""


@pytest.fixture(scope="module")
def fresh_process():
    """What :data:`FRESH`'s checks found, in a new interpreter."""
    import json

    result = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_each_module_imports_on_its_own(fresh_process):
    assert fresh_process["each_module"] is None, fresh_process["each_module"]


def test_old_module_paths_and_files_still_work(fresh_process):
    """The flat layout's module paths import, and a model file and a pickle written by it
    (0.1.0, kept under tests/data) load and predict as they did."""
    assert fresh_process["old_paths"] is None, fresh_process["old_paths"]


def test_the_catalog_and_the_command_line_start_without_torch():
    code = ("import sys, sktransfer.backbones.catalog, sktransfer.cli\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_public_names_only_in_the_package(tmp_path):
    assert set(sktransfer.__all__) == set(sktransfer._PUBLIC)
    for name in sktransfer.__all__:
        assert getattr(sktransfer, name).__doc__, f"{name} has no docstring"
    # dir() lists what a user can use, not the modules loaded so far
    importlib.import_module("sktransfer.extraction.cache")
    assert dir(sktransfer) == sorted([*sktransfer.__all__, "__version__"])


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
        if module.startswith("cli") or module == "_version" or module in FOLDERS:
            continue  # cli: everything; _version and the folders' __init__s: no row
        row = re.search(rf"^\| `{module}` \|.*\| (.*) \|$", doc, re.M)
        assert row, f"docs/architecture.md has no row for {module}"
        listed = set(re.findall(r"`([\w.]+)`", row.group(1)))
        assert listed == imports(module) - {"_version"}, module
