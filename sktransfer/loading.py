"""``sktransfer.load``: a model file back as the fitted estimator that wrote it."""

from __future__ import annotations

from .classifier import TransferClassifier
from .persistence.hub import hub_folder, is_hub_name
from .persistence.model_file import ModelFileError, read_model
from .regressor import TransferRegressor

#: The estimators a model file may name.
ESTIMATORS = {cls.__name__: cls for cls in (TransferClassifier, TransferRegressor)}

#: Parameters that describe the machine, not the model: a model file records
#: them, but :func:`load` sets them to this machine's defaults (or to what its
#: caller gives), so a file never chooses where or how this machine works.
MACHINE_PARAMS = ("cache_dir", "n_jobs", "device", "verbose")


def load(path, **params):
    """Load a model written by ``save`` or ``save_pretrained`` -- no code runs from it.

    The parameters that describe the machine (``cache_dir``, ``n_jobs``,
    ``device``, ``verbose``) are not taken from the file: they are the
    estimator's defaults unless given here.  The file's values stay in
    ``saved_params_``.

    Parameters
    ----------
    path : str or os.PathLike
        A model file, a folder ``save_pretrained`` wrote, or a model on the
        Hugging Face Hub, ``"hf://owner/name"`` (``"hf://owner/name@revision"``:
        a branch, tag or commit), read from the Hugging Face cache first.
    **params
        Parameters to set instead of the file's or the defaults, e.g.
        ``cache_dir="~/.cache/acts"`` or ``device="cuda"``.

    Returns
    -------
    TransferClassifier or TransferRegressor
        Fitted, ready to ``predict`` (on CPU unless CUDA is available).

    Raises
    ------
    FileNotFoundError
        When there is no file.
    ModelFileError
        When it is not a model file, comes from another format version, was
        tampered with, or its weights do not fit the architecture it names.
    """
    allowed = set().union(*(cls._get_param_names() for cls in ESTIMATORS.values()))
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise TypeError(f"load() got unknown parameter(s) {', '.join(map(repr, unknown))}; "
                        f"it takes the estimator's ({', '.join(sorted(allowed))}).")
    if is_hub_name(path):  # from the Hugging Face cache, else downloaded once
        path = hub_folder(path)
    name, parts = read_model(path)
    if name not in ESTIMATORS:
        raise ModelFileError(f"{path} holds a {name!r}; this sktransfer loads "
                             f"{', '.join(ESTIMATORS)}.")
    cls = ESTIMATORS[name]
    defaults = cls().get_params()
    wrong = sorted(set(params) - set(defaults))
    if wrong:
        raise TypeError(f"load() got parameter(s) {', '.join(map(repr, wrong))}, which a "
                        f"{name} does not take.")
    saved = parts["params"]
    parts["params"] = {**saved, **{k: defaults[k] for k in MACHINE_PARAMS}, **params}
    try:
        model = cls.from_fitted_state(**parts)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path} does not describe a loadable model: "
                             f"{str(exc).splitlines()[0]}") from exc
    model.saved_params_ = saved
    return model
