"""What a fitted estimator does with files: a model file, a Hub folder or repository, ONNX."""

from __future__ import annotations

import copyreg
from functools import partial

from sklearn.base import BaseEstimator

from .hub import push_folder
from .model_card import check_metrics, model_card
from .model_file import export_onnx, fitted_parts, model_parts, save, save_folder

#: The types a ``skops.io`` file of sktransfer's estimators holds beyond scikit-learn's own:
#: ``skops.io.load(path, trusted=sktransfer.TRUSTED_TYPES)`` (with a Pipeline's other steps
#: trusted by skops already).  What skops writes of them is plain values only (see SavingMixin).
TRUSTED_TYPES = ["sktransfer.classifier.TransferClassifier",
                 "sktransfer.features.PretrainedFeatures",
                 "sktransfer.regressor.TransferRegressor"]

#: Fitted attributes holding torch objects: the portable state (``__getstate__``, what
#: skops writes) carries the model file's parts instead, and they are rebuilt from them.
REBUILT = ("net_", "extractor_", "transform_", "history_", "device_")


def reduce_whole(est):
    """What ``pickle``, ``joblib``, Dask and ``copy`` take of a transfer estimator: its
    objects themselves, cheap to read back where a worker reads it for every task.

    ``__getstate__`` -- which ``skops.io`` calls, and :meth:`SavingMixin.__setstate__`
    reads -- gives the portable state instead: plain values a rebuild starts from.

    Returns
    -------
    tuple
        ``__reduce_ex__``'s ``(callable, args, state)``.
    """
    return copyreg.__newobj__, (type(est),), BaseEstimator.__getstate__(est)


class SavingMixin:
    """``save``, ``save_pretrained``, ``push_to_hub`` and ``export_onnx`` of a fitted
    transfer estimator (the estimators' handle on :mod:`sktransfer.persistence`), and its
    state for pickle and for skops.

    A fitted estimator's ``__getstate__`` is its model file's parts (the JSON
    config and the safetensors bytes) in place of the network, with its other
    attributes and every parameter (callbacks included) as they are: only
    plain values, which is what lets ``skops.io`` write it and trust nothing
    but the estimator's type, and read it back through the path
    :func:`sktransfer.load` takes.  ``pickle``, ``joblib``, Dask and ``copy``
    take the objects themselves (:func:`reduce_whole`), as a worker reading a
    model for every task needs.  A custom backbone module, which a model file
    cannot name, is always kept as the objects themselves.
    """

    def __reduce_ex__(self, protocol):
        return reduce_whole(self)

    def __getstate__(self):
        state = super().__getstate__()
        if "net_" not in state or not isinstance(self.backbone, str):
            return state
        config, weights = model_parts(self)
        portable = {k: v for k, v in state.items() if k not in REBUILT}
        portable["_model_file"] = {"config": config, "weights": weights}
        return portable

    def __setstate__(self, state):
        state = dict(state)
        model = state.pop("_model_file", None)
        if model is not None:
            parts = fitted_parts(model["config"], model["weights"])
            # the parameters as they were, not as the config encodes them (callbacks...)
            parts["params"] = {name: state.get(name, value)
                               for name, value in parts["params"].items()}
            rebuilt = type(self).from_fitted_state(**parts)
            state = {**{k: rebuilt.__dict__[k] for k in REBUILT}, **state}
        super().__setstate__(state)

    def save(self, path):
        """Save the fitted model to ``path``; read it back with :func:`sktransfer.load`.

        The file is a zip of a JSON config and the weights (safetensors):
        loading it cannot run code, unlike a pickle.  Custom backbone modules
        cannot be saved this way.

        Parameters
        ----------
        path : str or os.PathLike
        """
        save(self, path)

    def save_pretrained(self, folder, *, metrics=None):
        """Save the fitted model as a folder, laid out as a Hugging Face Hub repository.

        ``config.json`` and ``model.safetensors`` (what :meth:`save`'s file
        holds) and ``README.md``, a model card (backbone, weights and their
        source, preprocessing, classes or targets, training, how to load).
        :func:`sktransfer.load` reads the folder as it reads a file.

        Parameters
        ----------
        folder : str or os.PathLike
            Created if needed; these three files are replaced, others kept.
        metrics : dict of str to float, optional
            Scores on held-out images (e.g. ``{"accuracy": 0.93}``, what
            ``sktransfer evaluate`` prints), listed in the model card.

        Returns
        -------
        pathlib.Path
        """
        return save_folder(self, folder, partial(model_card, metrics=check_metrics(metrics)))

    def push_to_hub(self, repo_id, *, private=None, token=None, commit_message=None,
                    metrics=None):
        """Upload the fitted model to the Hugging Face Hub (as :meth:`save_pretrained` lays it
        out); ``sktransfer.load("hf://" + repo_id)`` reads it back.

        Parameters
        ----------
        repo_id : str
            ``owner/name``; created if it does not exist.
        private : bool, optional
        token : str, optional
            Default: huggingface_hub's own (``HF_TOKEN``, a saved login).
        commit_message : str, optional
        metrics : dict of str to float, optional
            As for :meth:`save_pretrained`.

        Returns
        -------
        str
            The commit's URL.
        """
        card = partial(model_card, metrics=check_metrics(metrics))
        return push_folder(self, repo_id, card, private, token, commit_message)

    def export_onnx(self, path, preprocessing=False):
        """Export the fitted network to an ONNX file for deployment.

        See :func:`sktransfer.persistence.model_file.export_onnx`: the model eats
        preprocessed ``(n, 3, s, s)`` images, or with ``preprocessing=True``
        uint8 images ``(n, s, s, 3)`` (normalisation and layout in the
        graph), and returns what ``predict`` is computed from (a classifier's
        probabilities, a regressor's predictions in the targets' units).

        Parameters
        ----------
        path : str or os.PathLike
        preprocessing : bool, default=False
            Put the normalisation into the graph: a runtime without
            sktransfer (ONNX Runtime in another language, the browser)
            only resizes and decodes.
        """
        export_onnx(self, path, preprocessing)
