"""sktransfer: transfer learning for images as a scikit-learn estimator.

Public names only; see ``DESIGN.md`` for the module layout.
"""

from .backbones import list_backbones
from .callbacks import PartialUnfreeze
from .classifier import TransferClassifier
from .data import load_image_folder
from .features import PretrainedFeatures

__all__ = [
    "PartialUnfreeze",
    "PretrainedFeatures",
    "TransferClassifier",
    "list_backbones",
    "load_image_folder",
]
__version__ = "0.1.0"
