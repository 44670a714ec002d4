"""The ``sktransfer`` flavour of MLflow: a fitted estimator logged as its model file.

The artifact is the model file :meth:`save` writes (JSON and safetensors,
hash-checked), so no pickle is written or read anywhere; MLflow's generic
``python_function`` flavour serves it::

    import mlflow, sktransfer.mlflow
    with mlflow.start_run():
        info = sktransfer.mlflow.log_model(clf, name="model")
    model = mlflow.pyfunc.load_model(info.model_uri)
    model.predict(pd.DataFrame({"path": ["cat.jpg", "dog.jpg"]}))

The ``python_function`` model takes a DataFrame with a column ``path`` (image
files) or ``image`` (encoded image files' bytes; base64 in a request to
``mlflow models serve``), and returns labels, probabilities or values
(``predict_method``, fixed at saving and overridable per call with
``params={"predict_method": ...}``).  The signature is recorded.

(:func:`mlflow.sklearn.save_model` with ``serialization_format="skops"`` and
``skops_trusted_types=sktransfer.TRUSTED_TYPES`` works too, for Pipelines
around the estimators; this flavour is the one that keeps sktransfer's file.)
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

import numpy as np

from ._version import __version__
from .loading import ESTIMATORS, load
from .utils.files import write_text

#: The flavour's name in an ``MLmodel`` file.
FLAVOR_NAME = "sktransfer"
#: The artifact: the model file, as :meth:`save` writes it.
MODEL_FILE = "model.sktransfer"
#: The columns the ``python_function`` model reads images from, and their MLflow types.
INPUT_COLUMNS = {"path": "string", "image": "binary"}
#: What the ``python_function`` model's ``predict`` returns.
PREDICT_METHODS = ("predict", "predict_proba")


def _mlflow():
    try:
        import mlflow.models
        import mlflow.pyfunc
    except ImportError:
        raise ImportError("sktransfer.mlflow needs MLflow: pip install 'sktransfer[mlflow]' "
                          "(or mlflow itself).") from None
    return mlflow


def _check_predict_method(estimator, predict_method):
    if predict_method not in PREDICT_METHODS:
        raise ValueError(f"predict_method={predict_method!r}; use one of "
                         f"{', '.join(map(repr, PREDICT_METHODS))}.")
    if not hasattr(estimator, predict_method):
        raise ValueError(f"predict_method={predict_method!r}, but a "
                         f"{type(estimator).__name__} has no {predict_method}; use 'predict'.")


def _extras(estimator):
    """The extras of sktransfer that running ``estimator`` as it was fitted needs."""
    extras = set()
    if isinstance(estimator.backbone, str) and (estimator.backbone.startswith("timm/")
                                                or "efficientnet_lite" in estimator.backbone):
        extras.add("timm")
    engine = estimator.engine_
    for extra in ("openvino", "onnxruntime"):
        if engine.startswith(extra):
            extras.add(extra)
    return sorted(extras)


def _pinned(distribution):
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


def get_default_pip_requirements(estimator):
    """The packages serving ``estimator`` needs: sktransfer (with the extras its backbone
    and engine need), torch and torchvision at this machine's versions, and MLflow.

    Parameters
    ----------
    estimator : TransferClassifier or TransferRegressor
        Fitted.

    Returns
    -------
    list of str
    """
    extras = _extras(estimator)
    extras = f"[{','.join(extras)}]" if extras else ""
    return [f"sktransfer{extras}=={__version__}", _pinned("torch"), _pinned("torchvision"),
            f"mlflow=={_mlflow().__version__}"]


def _label_type(values):
    kind = np.asarray(values).dtype.kind
    return {"b": "boolean", "i": "long", "u": "long", "f": "double"}.get(kind, "string")


def infer_signature(estimator, predict_method="predict"):
    """The signature of ``estimator``'s ``python_function`` model: the image columns in,
    labels, probabilities or values out, and ``predict_method`` as a parameter.

    Parameters
    ----------
    estimator : TransferClassifier or TransferRegressor
        Fitted.
    predict_method : {"predict", "predict_proba"}, default="predict"

    Returns
    -------
    mlflow.models.ModelSignature
    """
    _check_predict_method(estimator, predict_method)
    _mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(kind, name, required=False)
                     for name, kind in INPUT_COLUMNS.items()])
    names = _output_names(estimator, predict_method)
    if names is None:
        outputs = Schema([ColSpec(_label_type(getattr(estimator, "classes_", [0.0])))])
    else:
        kind = "double" if predict_method == "predict_proba" or not hasattr(
            estimator, "classes_") else "long"
        outputs = Schema([ColSpec(kind, name) for name in names])
    params = ParamSchema([ParamSpec("predict_method", "string", predict_method)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _output_names(estimator, predict_method):
    """The output columns' names, or None for one unnamed column (labels, one value)."""
    if hasattr(estimator, "classes_"):
        if predict_method == "predict" and not estimator.multilabel_:
            return None
        return [str(c) for c in estimator.classes_]
    if estimator.n_outputs_ == 1:
        return None
    names = estimator.target_names_
    return [str(n) for n in (range(estimator.n_outputs_) if names is None else names)]


def _write_environment(path, requirements):
    write_text(path / "requirements.txt", "\n".join(requirements) + "\n",
               "the model's requirements")
    python = ".".join(platform.python_version_tuple())
    write_text(path / "python_env.yaml",
               f"python: {python}\nbuild_dependencies:\n- pip\ndependencies:\n"
               "- -r requirements.txt\n", "the model's environment")


def save_model(estimator, path, *, predict_method="predict", signature=None,
               pip_requirements=None, extra_pip_requirements=None, metadata=None,
               mlflow_model=None):
    """Save a fitted estimator as an MLflow model in the folder ``path``.

    The folder holds the model file (``model.sktransfer``), the ``MLmodel``
    description (the ``sktransfer`` and ``python_function`` flavours, the
    signature) and the environment (``requirements.txt``,
    ``python_env.yaml``).  Nothing in it is a pickle.

    Parameters
    ----------
    estimator : TransferClassifier or TransferRegressor
        Fitted, with a named backbone (a custom module cannot be saved).
    path : str or os.PathLike
        A folder that does not exist yet, or is empty.
    predict_method : {"predict", "predict_proba"}, default="predict"
        What the ``python_function`` model returns: labels (tags as 0/1
        columns, or values, for a regressor), or one probability column per
        class.
    signature : mlflow.models.ModelSignature, optional
        Default: :func:`infer_signature`.
    pip_requirements : list of str, optional
        Replaces :func:`get_default_pip_requirements`.
    extra_pip_requirements : list of str, optional
        Added to them.
    metadata : dict, optional
        Stored in ``MLmodel`` as is.
    mlflow_model : mlflow.models.Model, optional
        The description to add the flavours to (what :func:`log_model` passes).

    Returns
    -------
    pathlib.Path
    """
    if type(estimator).__name__ not in ESTIMATORS:
        raise TypeError(f"sktransfer.mlflow saves {' and '.join(ESTIMATORS)}, not "
                        f"{type(estimator).__name__}; for a Pipeline use "
                        "mlflow.sklearn.save_model(..., serialization_format='skops', "
                        "skops_trusted_types=sktransfer.TRUSTED_TYPES).")
    _check_predict_method(estimator, predict_method)
    mlflow = _mlflow()
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty folder; MLflow models are "
                              "saved into a new folder.")
    requirements = (get_default_pip_requirements(estimator) if pip_requirements is None
                    else list(pip_requirements))
    requirements += list(extra_pip_requirements or ())
    if signature is None:
        signature = infer_signature(estimator, predict_method)
    path.mkdir(parents=True, exist_ok=True)
    estimator.save(path / MODEL_FILE)
    _write_environment(path, requirements)
    model = mlflow.models.Model() if mlflow_model is None else mlflow_model
    model.signature = signature
    if metadata is not None:
        model.metadata = metadata
    mlflow.pyfunc.add_to_model(model, loader_module=__name__, data=MODEL_FILE,
                               python_env="python_env.yaml")
    model.add_flavor(FLAVOR_NAME, model_file=MODEL_FILE, estimator=type(estimator).__name__,
                     predict_method=predict_method, sktransfer_version=__version__)
    model.save(os.fspath(path / "MLmodel"))
    return path


def log_model(estimator, name="model", *, predict_method="predict", signature=None,
              pip_requirements=None, extra_pip_requirements=None, metadata=None,
              registered_model_name=None, **kwargs):
    """Log a fitted estimator as an MLflow model of the current run (started if none is).

    Parameters
    ----------
    estimator : TransferClassifier or TransferRegressor
        Fitted.
    name : str, default="model"
        The model's name in the run.
    predict_method, signature, pip_requirements, extra_pip_requirements, metadata
        As for :func:`save_model`.
    registered_model_name : str, optional
        Also register it in the model registry under this name.
    **kwargs
        Passed to :meth:`mlflow.models.Model.log` (``params``, ``tags``, ...).

    Returns
    -------
    mlflow.models.model.ModelInfo
        Its ``model_uri`` is what :func:`load_model` and
        :func:`mlflow.pyfunc.load_model` read.
    """
    _check_predict_method(estimator, predict_method)
    mlflow = _mlflow()
    return mlflow.models.Model.log(
        artifact_path=None, name=name, flavor=sys.modules[__name__],
        registered_model_name=registered_model_name, estimator=estimator,
        predict_method=predict_method, signature=signature,
        pip_requirements=pip_requirements, extra_pip_requirements=extra_pip_requirements,
        metadata=metadata, **kwargs)


def _flavor_conf(folder, model_uri):
    """The ``sktransfer`` flavour's entry in the ``MLmodel`` file of ``folder``."""
    flavors = _mlflow().models.Model.load(os.fspath(Path(folder) / "MLmodel")).flavors
    if FLAVOR_NAME not in flavors:
        raise ValueError(f"{model_uri} is an MLflow model of flavour(s) "
                         f"{', '.join(flavors)}, not {FLAVOR_NAME!r}; read it with "
                         "mlflow.pyfunc.load_model.")
    return flavors[FLAVOR_NAME]


def load_model(model_uri, dst_path=None, **params):
    """Load the estimator an MLflow model of the ``sktransfer`` flavour holds.

    Parameters
    ----------
    model_uri : str or os.PathLike
        A local folder, ``runs:/<run id>/<name>``, ``models:/<name>/<version>``,
        ``models:/<model id>``, or any URI MLflow's artifact stores read.
    dst_path : str or os.PathLike, optional
        Where to download it (default: a temporary folder).
    **params
        As for :func:`sktransfer.load` (``device``, ``cache_dir``, ...).

    Returns
    -------
    TransferClassifier or TransferRegressor
        Read through :func:`sktransfer.load`: hash-checked, no code run.
    """
    _mlflow()
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=os.fspath(model_uri),
                                                     dst_path=dst_path))
    return load(local / _flavor_conf(local, model_uri)["model_file"], **params)


def _load_pyfunc(path):
    """What ``mlflow.pyfunc.load_model`` calls with the model file's path."""
    conf = _flavor_conf(Path(path).parent, path)
    return PyFuncModel(load(path), conf["predict_method"])


class PyFuncModel:
    """A fitted estimator as MLflow's ``python_function`` model: images from a DataFrame's
    ``path`` or ``image`` column in, a DataFrame or an array out.

    Parameters
    ----------
    estimator : TransferClassifier or TransferRegressor
        Fitted.
    predict_method : {"predict", "predict_proba"}, default="predict"
    """

    def __init__(self, estimator, predict_method="predict"):
        _check_predict_method(estimator, predict_method)
        self.estimator = estimator
        self.predict_method = predict_method

    def get_raw_model(self):
        """The estimator itself."""
        return self.estimator

    def predict(self, model_input, params=None):
        """Predict for the images of ``model_input``.

        Parameters
        ----------
        model_input : pandas.DataFrame
            With a column ``path`` (files) or ``image`` (encoded files'
            bytes); a one-column DataFrame may name its column otherwise.
        params : dict, optional
            ``{"predict_method": "predict_proba"}`` overrides the saved choice.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            Labels or values (one column); several columns (probabilities,
            tags, targets) as a DataFrame named by class, tag or target.
        """
        method = (params or {}).get("predict_method") or self.predict_method
        _check_predict_method(self.estimator, method)
        out = getattr(self.estimator, method)(_images(model_input))
        names = _output_names(self.estimator, method)
        if names is None:
            return np.asarray(out).ravel()
        import pandas as pd

        return pd.DataFrame(np.asarray(out), columns=names)


def _images(model_input):
    """The image column of ``model_input``: paths (str) or encoded files (bytes)."""
    columns = getattr(model_input, "columns", None)
    if columns is None:
        return model_input
    given = [c for c in INPUT_COLUMNS if c in columns and model_input[c].notna().any()]
    if len(given) == 1:
        return list(model_input[given[0]])
    if not given and len(columns) == 1:
        return list(model_input.iloc[:, 0])
    raise ValueError(
        f"the input has columns {', '.join(map(repr, map(str, columns)))}; give the images "
        "in one column: 'path' (image files) or 'image' (encoded image files' bytes).")
