"""sktransfer: transfer learning for images as a scikit-learn estimator.

Public names only; see ``DESIGN.md`` for the module layout.
"""

from .backbones import list_backbones
from .callbacks import PartialUnfreeze
from .classifier import TransferClassifier
from .data import load_image_folder
from .features import PretrainedFeatures
from .persist import ModelFileError, load
from .plots import plot_confusion_matrix, plot_learning_curve

__all__ = [
    "ModelFileError",
    "PartialUnfreeze",
    "PretrainedFeatures",
    "TransferClassifier",
    "list_backbones",
    "load",
    "load_image_folder",
    "plot_confusion_matrix",
    "plot_learning_curve",
]
__version__ = "0.1.0"
