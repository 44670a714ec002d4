"""MLflow with the real package: the ``sktransfer`` flavour (the model file as the artifact,
no pickle) and MLflow's sklearn flavour through skops, each read back in a new process,
and the flavour served by ``mlflow models serve`` on 127.0.0.1."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")
import mlflow.sklearn  # noqa: E402

import sktransfer  # noqa: E402
import sktransfer.mlflow as skm  # noqa: E402
from sktransfer import TransferClassifier, TransferRegressor  # noqa: E402

from conftest import blobs  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)

#: In a new process: each model read back through MLflow, predictions written as JSON.
READ_BACK = """
import json, sys
import mlflow, mlflow.pyfunc, pandas as pd
import sktransfer.mlflow
flavour, sklearn_skops, regressor, files = sys.argv[1:5]
files = json.loads(files)
encoded = [open(f, "rb").read() for f in files]
out = {
    "paths": mlflow.pyfunc.load_model(flavour).predict(pd.DataFrame({"path": files})).tolist(),
    "bytes": mlflow.pyfunc.load_model(flavour).predict(
        pd.DataFrame({"image": encoded}), params={"predict_method": "predict_proba"}).to_dict("list"),
    "estimator": sktransfer.mlflow.load_model(flavour).predict(files).tolist(),
    "skops": mlflow.pyfunc.load_model(sklearn_skops).predict(pd.DataFrame({"path": files})).tolist(),
    "regressor": mlflow.pyfunc.load_model(regressor).predict(pd.DataFrame({"path": files})).to_dict("list"),
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    X, y = blobs(12, size=32)
    files = []
    for i, image in enumerate(X):
        files.append(str(folder / f"{i}.png"))
        Image.fromarray(image).save(files[-1])
    clf = TransferClassifier(**FAST).fit(files, np.array(["cat", "dog"])[y])
    reg = TransferRegressor(**FAST).fit(files, pd.DataFrame({"weight": 10.0 + y, "age": 2.0 - y}))
    return files, clf, reg


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A tracking store of MLflow's in a temporary folder (the file store: mlflow-skinny
    has no database backend)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    yield
    mlflow.set_tracking_uri(None)


def _no_pickle_in(folder):
    for path in Path(folder).rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:2]
            assert not (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"), path
    assert "pickle" not in (Path(folder) / "MLmodel").read_text()


def test_logged_models_read_back_in_a_new_process_with_the_same_predictions(fitted, tmp_path,
                                                                          tracking):
    files, clf, reg = fitted
    with mlflow.start_run():
        info = skm.log_model(clf, name="classifier")
        reg_info = skm.log_model(reg, name="regressor")
    # the sklearn flavour, written by skops and read trusting sktransfer's types only
    mlflow.sklearn.save_model(clf, tmp_path / "skops", serialization_format="skops",
                              skops_trusted_types=sktransfer.TRUSTED_TYPES,
                              pip_requirements=["sktransfer"])  # not inferred: a process
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp_path / "got")
    _no_pickle_in(local)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    run = subprocess.run([sys.executable, "-c", READ_BACK, info.model_uri,
                          str(tmp_path / "skops"), reg_info.model_uri, json.dumps(files)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    labels = clf.predict(files).tolist()
    assert got["paths"] == got["estimator"] == got["skops"] == labels
    proba = clf.predict_proba(files)
    np.testing.assert_allclose(np.c_[got["bytes"]["cat"], got["bytes"]["dog"]], proba,
                               rtol=0, atol=1e-6)
    values = reg.predict(files)
    np.testing.assert_allclose(np.c_[got["regressor"]["weight"], got["regressor"]["age"]],
                               values, rtol=0, atol=1e-6)


def test_the_signature_names_the_image_columns_and_the_outputs(fitted):
    files, clf, reg = fitted
    sig = skm.infer_signature(clf, "predict_proba")
    assert [(c.name, c.type.name, c.required) for c in sig.inputs.inputs] == [
        ("path", "string", False), ("image", "binary", False)]
    assert [c.name for c in sig.outputs.inputs] == ["cat", "dog"]
    assert sig.params.params[0].default == "predict_proba"
    assert skm.infer_signature(clf).outputs.inputs[0].type.name == "string"
    assert [c.name for c in skm.infer_signature(reg).outputs.inputs] == ["weight", "age"]


def test_the_environment_names_sktransfer_torch_and_mlflow(fitted, tmp_path):
    files, clf, reg = fitted
    skm.save_model(clf, tmp_path / "m", extra_pip_requirements=["pillow-simd"])
    requirements = (tmp_path / "m" / "requirements.txt").read_text().split()
    first, version = requirements[0].split("==")
    assert version == sktransfer.__version__
    # the extra of the engine it was fitted with ("auto" decided), so it serves the same
    assert first == ("sktransfer" if clf.engine_ == "torch"
                     else f"sktransfer[{clf.engine_.split('-')[0]}]"), first
    assert {r.split("==")[0] for r in requirements} >= {"torch", "torchvision", "mlflow",
                                                        "pillow-simd"}
    assert "-r requirements.txt" in (tmp_path / "m" / "python_env.yaml").read_text()


def test_mistakes_are_named_before_anything_is_written(fitted, tmp_path):
    from sklearn.pipeline import make_pipeline

    files, clf, reg = fitted
    with pytest.raises(ValueError, match="TransferRegressor has no predict_proba"):
        skm.save_model(reg, tmp_path / "a", predict_method="predict_proba")
    with pytest.raises(ValueError, match="predict_method='decision_function'"):
        skm.save_model(clf, tmp_path / "a", predict_method="decision_function")
    with pytest.raises(TypeError, match="skops_trusted_types=sktransfer.TRUSTED_TYPES"):
        skm.save_model(make_pipeline(clf), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        skm.save_model(clf, tmp_path / "b")
    assert os.listdir(tmp_path / "b") == ["notes.txt"]
    mlflow.sklearn.save_model(clf, tmp_path / "c", serialization_format="skops",
                              skops_trusted_types=sktransfer.TRUSTED_TYPES,
                              pip_requirements=["sktransfer"])  # not inferred: a process
    with pytest.raises(ValueError, match="not 'sktransfer'.*mlflow.pyfunc.load_model"):
        skm.load_model(tmp_path / "c")


def test_the_pyfunc_model_takes_one_image_column(fitted):
    files, clf, reg = fitted
    model = skm.PyFuncModel(clf)
    encoded = [Path(f).read_bytes() for f in files]
    both = pd.DataFrame({"path": files, "image": encoded})
    with pytest.raises(ValueError, match="'path' \\(image files\\) or 'image'"):
        model.predict(both)
    # a one-column frame may name its column otherwise; bytes and paths agree
    np.testing.assert_array_equal(model.predict(pd.DataFrame({"photo": encoded})),
                                  model.predict(pd.DataFrame({"path": files})))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["predictions"]


def test_mlflow_models_serve_answers_images_posted_to_it(fitted, tmp_path):
    files, clf, reg = fitted
    skm.save_model(clf, tmp_path / "m", predict_method="predict_proba")
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)  # where the venv's uvicorn is
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(tmp_path / "m"),
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                assert time.monotonic() < deadline, "the server did not start in 180 s"
                time.sleep(0.5)
        encoded = [base64.b64encode(Path(f).read_bytes()).decode() for f in files[:4]]
        proba = _post(port, {"dataframe_split": {"columns": ["image"],
                                                 "data": [[e] for e in encoded]}})
        np.testing.assert_allclose([[p["cat"], p["dog"]] for p in proba],
                                   clf.predict_proba(files[:4]), rtol=0, atol=1e-6)
        labels = _post(port, {"dataframe_split": {"columns": ["path"],
                                                  "data": [[f] for f in files[:4]]},
                              "params": {"predict_method": "predict"}})
        assert labels == clf.predict(files[:4]).tolist()
    finally:
        server.terminate()
        server.wait(timeout=30)
