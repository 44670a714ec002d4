"""Backbones: a name resolves to one weights record, which builds ordered blocks and a preset.

``catalog`` (plain data, no torch), ``records``, ``weights`` (torchvision's files),
``torchvision_family`` and ``timm_family`` (the families' splitters), ``preprocess``,
``shapes``, ``pooling``, ``cut`` (frozen prefix | trainable blocks), and ``building``,
which ties them together.  The names of ``building`` are importable from here;
they load on first use, so that ``sktransfer.backbones.catalog`` stays free of torch.
"""

import importlib

_BUILDING = ("build_backbone", "check_on_this_machine", "fetch_weights",
             "imagenet_on_this_machine", "list_backbones", "locate", "resolve_name", "write_table")


def __getattr__(name):
    if name in _BUILDING:
        return getattr(importlib.import_module(".building", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
