"""The model card of a saved model: the ``README.md`` a Hugging Face Hub repository shows.

Written from the model's config alone (:func:`~sktransfer.persistence.model_file.model_parts`),
so that the card says what the file holds, and the scores its caller gives, nothing else.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping

from ..utils.text import listed


def _weights_source(backbone, weights):
    """Where the pretrained weights come from, and whose terms they are under."""
    if weights is None or weights == "random":
        return "random initialisation (no pretrained weights)"
    if str(backbone).startswith("timm/"):
        return (f"`{weights}`, from timm's model zoo on the Hugging Face Hub; their license "
                "is the one on that model's card")
    return (f"torchvision's `{weights}` ImageNet weights; their terms are torchvision's "
            "(https://pytorch.org/vision/stable/models.html)")


def check_metrics(metrics):
    """``metrics`` as ``{name: float}``, checked before anything is written.

    Raises
    ------
    TypeError
        Naming the entry that is not a name and a number.
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> number, e.g. "
                        f"{{'accuracy': 0.93}}; got a {type(metrics).__name__}.")
    checked = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(
                value, numbers.Real):
            raise TypeError(f"metrics[{name!r}] = {value!r}: each metric is a name (str) and "
                            "a number, e.g. {'accuracy': 0.93}.")
        checked[name] = float(value)
    return checked


def model_card(config, repo_id=None, metrics=None):
    """``README.md`` for a model whose config is ``config``.

    Parameters
    ----------
    config : dict
        A model file's config.
    repo_id : str, optional
        ``owner/name`` on the Hub, for the loading example.
    metrics : dict of str to float, optional
        Scores measured on held-out images (e.g. ``evaluate``'s), listed in the
        card under "Evaluation" and in its front matter.

    Returns
    -------
    str
        YAML front matter (``library_name: sktransfer``, tags, pipeline) and
        Markdown: the estimator, backbone, weights and their source, the
        preprocessing, the classes or targets, the training, how to load it.
    """
    params, target = config["params"], config["target"]
    estimator = config["estimator"]
    classifier = "classes" in target
    multilabel = classifier and target.get("multilabel", False)
    backbone = params.get("backbone")
    task = "image-classification" if classifier else "image-regression"
    if classifier:
        what = (f"{len(target['classes'])} tags (multi-label): " if multilabel
                else f"{len(target['classes'])} classes: ")
        what += listed([str(c) for c in target["classes"]], limit=30)
    else:
        names = target.get("target_names") or [
            f"output {j}" for j in range(len(target.get("target_mean") or [0]))]
        what = f"{len(names)} number(s): {listed([str(n) for n in names], limit=30)}"
    history = config.get("history") or []
    last = history[-1] if history else {}
    losses = ", ".join(f"{k.replace('_', ' ')} {last[k]:.4g}" for k in ("train_loss", "valid_loss")
                       if isinstance(last.get(k), (int, float)))
    prep = config.get("preprocessing") or {}
    unfreeze = params.get("unfreeze", 0)
    tuned = (f"its last {unfreeze} block(s) fine-tuned" if unfreeze
             else "frozen (a new head trained on its features)")
    where = f"hf://{repo_id}" if repo_id else "path/to/this/folder"
    metrics = check_metrics(metrics)
    front = "\n".join(["---", "library_name: sktransfer",
                       f"pipeline_tag: {task}",
                       "tags:", "- sktransfer", "- transfer-learning", f"- {task}",
                       *(["metrics:", *(f"- {json.dumps(name)}" for name in metrics)]
                         if metrics else []),
                       "---"])
    evaluation = "".join(
        ["\n## Evaluation\n\nMeasured on images held out from its training:\n\n"
         "| metric | value |\n|---|---|\n",
         *(f"| {name} | {value:.4g} |\n" for name, value in metrics.items())]
    ) if metrics else ""
    return f"""{front}

# {estimator} on `{backbone}`

A scikit-learn estimator made with [sktransfer](https://pypi.org/project/sktransfer/)
{config.get("sktransfer_version", "")}: a pretrained backbone with a new head, fitted on images.

| | |
|---|---|
| estimator | `{estimator}` |
| backbone | `{backbone}`, {tuned} |
| pretrained weights | {_weights_source(backbone, config.get("weights_loaded"))} |
| predicts | {what} |
| preprocessing | {f"`{json.dumps(prep)}`" if prep else "the weights' own"} |
| training | {len(history)} epochs{"; last " + losses if losses else ""} |
{evaluation}
## How to use

```python
import sktransfer

model = sktransfer.load("{where}")  # no code runs from the files: JSON and safetensors
model.predict(["photo.jpg"])
```

The weights (`model.safetensors`) are checked against the sha256 recorded in
`config.json` before they are used.
"""
