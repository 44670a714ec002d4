"""sktransfer: transfer learning for images as a scikit-learn estimator.

Public names only; see ``docs/architecture.md`` for the layout.  Names are
imported on first use, so that ``sktransfer --help`` and error messages of
the command line do not wait for torch to load.
"""

import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import sys as _sys

from ._version import __version__  # noqa: F401  (re-exported)

_PUBLIC = {
    "ModelFileError": "persistence.model_file",
    "PartialUnfreeze": "training.callbacks",
    "PretrainedFeatures": "features",
    "TRUSTED_TYPES": "persistence.mixin",
    "TransferClassifier": "classifier",
    "TransferRegressor": "regressor",
    "WriteError": "utils.files",
    "clear_caches": "caches",
    "fill_cache": "cluster",
    "list_backbones": "backbones.building",
    "load": "loading",
    "load_image_folder": "inputs.images",
    "plot_confusion_matrix": "inspection.plots",
    "plot_learning_curve": "inspection.plots",
    "predict_partitions": "cluster",
    "report": "inspection.report",
    "search_progress": "utils.progress",
}
__all__ = sorted(_PUBLIC)  # and __version__

#: Where the modules of the flat layout (0.1) went.  ``import sktransfer.callbacks``
#: and pickles written before the move find them here.  Not ``report``: that name
#: is the public function.
_MOVED = {
    "allocator": "extraction.allocator", "backbones": "backbones", "cache": "extraction.cache",
    "callbacks": "training.callbacks", "catalog": "backbones.catalog", "cut": "backbones.cut",
    "data": "inputs.images", "decoding": "extraction.decoding", "demo_data": "inputs.demo_data",
    "engines": "extraction.engines", "explain": "inspection.explain",
    "extractor": "extraction.extractor", "extractor_mixin": "extraction.mixin",
    "files": "utils.files", "folding": "extraction.folding", "network": "training.network",
    "persist": "persistence.model_file", "plots": "inspection.plots",
    "preprocess": "backbones.preprocess", "progress": "utils.progress",
    "records": "backbones.records", "rng": "utils.rng", "shapes": "backbones.shapes",
    "stored_params": "persistence.stored_params", "tables": "inputs.tables",
    "timm_family": "backbones.timm_family", "torchvision_family": "backbones.torchvision_family",
    "views": "inputs.views",
}


class _MovedModules(_abc.MetaPathFinder, _abc.Loader):
    """Finds ``sktransfer.<old name>`` as the module now holding it, and nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix != __name__ or name not in _MOVED or _MOVED[name] == name:
            return None
        return _util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return _importlib.import_module(f"{__name__}.{_MOVED[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module):
        pass  # the module it stands for has run already


if not any(isinstance(f, _MovedModules) for f in _sys.meta_path):
    _sys.meta_path.append(_MovedModules())


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(_importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sktransfer' has no attribute {name!r}")


def __dir__():
    return sorted(["__version__", *__all__])
