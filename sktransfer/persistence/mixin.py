"""What a fitted estimator does with files: a model file, a Hub folder or repository, ONNX."""

from __future__ import annotations

from .hub import push_folder
from .model_card import model_card
from .model_file import export_onnx, save, save_folder


class SavingMixin:
    """``save``, ``save_pretrained``, ``push_to_hub`` and ``export_onnx`` of a fitted
    transfer estimator (the estimators' handle on :mod:`sktransfer.persistence`)."""

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

    def save_pretrained(self, folder):
        """Save the fitted model as a folder, laid out as a Hugging Face Hub repository.

        ``config.json`` and ``model.safetensors`` (what :meth:`save`'s file
        holds) and ``README.md``, a model card (backbone, weights and their
        source, preprocessing, classes or targets, training, how to load).
        :func:`sktransfer.load` reads the folder as it reads a file.

        Parameters
        ----------
        folder : str or os.PathLike
            Created if needed; these three files are replaced, others kept.

        Returns
        -------
        pathlib.Path
        """
        return save_folder(self, folder, model_card)

    def push_to_hub(self, repo_id, *, private=None, token=None, commit_message=None):
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

        Returns
        -------
        str
            The commit's URL.
        """
        return push_folder(self, repo_id, model_card, private, token, commit_message)

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
