"""The `sktransfer` command, driven as a user would: in a subprocess."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from sktransfer import load
from sktransfer.cli import main

from conftest import requires_imagenet


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sktransfer.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_the_installed_command_answers_help():
    script = Path(sys.executable).parent / "sktransfer"  # the venv's console script
    result = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: sktransfer" in result.stdout
    for command in ("train", "predict", "evaluate", "classify", "backbones", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "classify", "backbones",
                                     "demo"])
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: sktransfer {command}" in capsys.readouterr().out


def test_train_predict_evaluate(image_folder, tmp_path):
    model = tmp_path / "out" / "m.sktransfer"
    model.parent.mkdir()
    trained = run("train", image_folder, "--backbone", "resnet18", "--weights", "none",
                  "--epochs", "2", "--test-size", "0.34", "--out", model, "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert model.exists()
    assert (tmp_path / "out" / "m.confusion.png").stat().st_size > 1000
    assert (tmp_path / "out" / "m.learning_curve.png").stat().st_size > 1000

    predicted = run("predict", model, image_folder / "class_0", image_folder / "class_1")
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
    assert len(rows) == 12
    assert {r["label"] for r in rows} <= {"class_0", "class_1"}
    for r in rows:
        assert abs(float(r["p_class_0"]) + float(r["p_class_1"]) - 1) < 1e-4
    assert rows[0]["label"] == load(model).predict([rows[0]["path"]])[0]

    evaluated = run("evaluate", model, image_folder)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy:" in evaluated.stdout and "class_0" in evaluated.stdout
    assert (tmp_path / "out" / "m.evaluate.png").exists()


def test_train_with_cross_validation(image_folder, tmp_path):
    result = run("train", image_folder, "--backbone", "resnet18", "--weights", "none",
                 "--epochs", "1", "--cv", "3", "--out", tmp_path / "m.sktransfer", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.sktransfer").exists()


def test_bad_paths_and_folders_give_a_message_not_a_trace(tmp_path, image_folder):
    result = run("train", tmp_path / "missing")
    assert result.returncode != 0 and "missing" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = run("train", tmp_path / "empty")
    assert result.returncode != 0 and "No images" in result.stderr
    assert "Traceback" not in result.stderr
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    (image_folder / "class_0" / "img0.jpg").rename(one / "only" / "a.jpg")
    result = run("train", one)
    assert result.returncode != 0 and "one class" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("predict", tmp_path / "nomodel.sktransfer", image_folder)
    assert result.returncode != 0 and "nomodel" in result.stderr
    assert "Traceback" not in result.stderr


def test_backbones_table(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("mobilenet_v2 "))
    assert "mobilenet" in line and " 19 " in line and "1280" in line


@requires_imagenet
def test_demo_falls_back_to_digits_without_npm(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent), "SKTRANSFER_DATA": str(tmp_path / "data"),
           "HOME": str(tmp_path), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-m", "sktransfer.cli", "demo", "--quick", "--quiet",
         "--out-dir", tmp_path / "demo"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Falling back to scikit-learn's bundled digits" in result.stderr
    assert "CV accuracy" in result.stdout
    accuracy = float(result.stdout.split("CV accuracy ")[-1].split()[0])
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    assert (tmp_path / "demo" / "confusion.png").exists()
    assert (tmp_path / "demo" / "model.sktransfer").exists()


@requires_imagenet
def test_classify_names_the_photos(tmp_path, capsys):
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    assert main(["classify", str(tmp_path / "cat.png"), str(tmp_path / "coffee.jpg"),
                 "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(str(tmp_path / "cat.png"))
    assert lines[0].split(": ", 1)[1].split(" (")[0] in {"Egyptian cat", "tabby", "tiger cat"}
    assert lines[1].split(": ", 1)[1].startswith("espresso")
    assert main(["classify", str(tmp_path / "missing.jpg")]) == 2
