"""Plots of a fit: learning curves from ``history_`` and the confusion matrix.

Like scikit-learn's Displays, these draw with pyplot and leave the matplotlib
backend to the user (the command line chooses ``Agg`` for itself).
"""

from __future__ import annotations

import numpy as np


def plot_learning_curve(history, ax=None):
    """Plot losses (and validation accuracy) per epoch, marking where phase 2 starts.

    Parameters
    ----------
    history : skorch.History or TransferClassifier
        ``clf.history_`` or a fitted classifier.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    history = getattr(history, "history_", history)
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    epochs = [row["epoch"] for row in history]
    for key, style in (("train_loss", "-o"), ("valid_loss", "-s")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [np.nan if v is None else v for v in values], style,
                    label=key.replace("_", " "))
    # the phase each epoch was in; histories from before it was recorded: the rate
    marks = [row.get("phase", row.get("lr")) for row in history]
    for i in range(1, len(marks)):
        if marks[i] is not None and marks[i - 1] is not None and marks[i] != marks[i - 1]:
            ax.axvline(epochs[i] - 0.5, color="grey", linestyle=":", label="fine-tuning starts")
    accs = [row.get("valid_acc") for row in history]
    if any(a is not None for a in accs):
        twin = ax.twinx()
        twin.plot(epochs, [np.nan if a is None else a for a in accs], "-^", color="tab:green",
                  label="valid accuracy")
        twin.set_ylabel("accuracy")
        twin.set_ylim(0, 1)
        twin.legend(loc="center right")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    ax.set_title("Learning curve")
    return ax


def plot_confusion_matrix(y_true, y_pred, labels=None, ax=None):
    """scikit-learn's ``ConfusionMatrixDisplay``, sized for many classes.

    Parameters
    ----------
    y_true, y_pred : array-like
    labels : array-like, optional
        Order of the classes (default: sorted union).
    ax : matplotlib Axes, optional

    Returns
    -------
    sklearn.metrics.ConfusionMatrixDisplay
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    import matplotlib.pyplot as plt

    if ax is None:
        n = len(labels) if labels is not None else len(np.unique(np.concatenate(
            [np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)])))
        side = max(4.0, 0.5 * n + 2)
        _, ax = plt.subplots(figsize=(side, side))
    return ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, ax=ax, xticks_rotation="vertical", colorbar=False)
