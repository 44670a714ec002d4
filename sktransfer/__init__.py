"""sktransfer: transfer learning for images as a scikit-learn estimator.

Public names only; see ``docs/architecture.md`` for the module layout.  Names are
imported on first use, so that ``sktransfer --help`` and error messages of
the command line do not wait for torch to load.
"""

import importlib

from ._version import __version__  # noqa: F401  (re-exported)

_PUBLIC = {
    "ModelFileError": "persist",
    "PartialUnfreeze": "callbacks",
    "PretrainedFeatures": "features",
    "TransferClassifier": "classifier",
    "TransferRegressor": "regressor",
    "WriteError": "files",
    "fill_cache": "cluster",
    "list_backbones": "backbones",
    "load": "loading",
    "load_image_folder": "data",
    "plot_confusion_matrix": "plots",
    "plot_learning_curve": "plots",
    "predict_partitions": "cluster",
    "report": "report",
    "search_progress": "progress",
}
__all__ = sorted(_PUBLIC)  # and __version__


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sktransfer' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
