"""Warnings that point at the user's own line, not at the package's insides."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parents[1])


def warn_user(message, category=UserWarning):
    """``warnings.warn(message, category)`` attributed to the first caller outside the package.

    Parameters
    ----------
    message : str
    category : type of Warning, default=UserWarning
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    # warnings.warn counts its own caller as level 1: this function
    warnings.warn(message, category, stacklevel=level + 1)
