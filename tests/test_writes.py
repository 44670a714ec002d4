"""Every file sktransfer writes is all or nothing, and a failed write names the file.

Each writer is run against a previous file of the target's name on a real
full disk (a small tmpfs filled to the last byte; where no mount is allowed,
a process whose file writes are capped with RLIMIT_FSIZE), in a read-only
folder and into a missing folder: the previous file stays byte for byte,
the folder holds nothing new, and the message names the file and why.
"""

import csv
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sktransfer import TransferClassifier, WriteError, load
from sktransfer import cli
from sktransfer.cli import common
from sktransfer.cli import predict as cli_predict
from sktransfer.utils.files import atomic_write, write_bytes

from conftest import blobs, requires_imagenet
from disks import fill, remount_read_only, tmpfs

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)
PREVIOUS = b"the previous file, which a failed write must leave alone\n" * 20


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    X, y = blobs(16)
    path = tmp_path_factory.mktemp("model") / "model.sktransfer"
    TransferClassifier(**FAST).fit(X, y).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of 10 PNG files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for i, img in enumerate(blobs(10)[0]):
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    return folder


# -- the writers, each (model file, photos, target) -> writes target -------------

def write_model(model, photos, target):
    load(model).save(target)


def write_onnx(model, photos, target):
    load(model).export_onnx(target)


def write_report(model, photos, target):
    from sktransfer import report

    X, y = blobs(4)
    report(load(model), X, y, target)


def write_figure(model, photos, target):
    import matplotlib

    matplotlib.use("Agg")
    from sktransfer import plot_confusion_matrix

    common.save_figure(plot_confusion_matrix([0, 1, 1], [0, 1, 0]), target)


def write_predictions(model, photos, target):
    """The command line: one line on stderr, exit code 1, raised here as the error."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["--quiet", "predict", str(model), str(photos), "--out", str(target)])
    if code != 0:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1, lines  # one line, no traceback
        raise WriteError(lines[0])


def write_weights(model, photos, target):
    from sktransfer.backbones.building import fetch_weights

    fetch_weights("mobilenet", folder=target.parent)


WRITERS = {
    "model": (write_model, "m.sktransfer", "the model"),
    "onnx": (write_onnx, "m.onnx", "the ONNX model"),
    "report": (write_report, "r.html", "the report"),
    "figure": (write_figure, "confusion.png", "the figure"),
    "predictions": (write_predictions, "preds.csv", "predictions"),
    "weights": (write_weights, "mobilenet_v2-b0353104.pth", "weights"),
}
PARAMS = [pytest.param(name, marks=requires_imagenet) if name == "weights" else name
          for name in WRITERS]


def _previous(name, target):
    """A previous file of the target's name (a weights file already there is verified and
    kept, never replaced: there the write is into an empty place)."""
    if name != "weights":
        target.write_bytes(PREVIOUS)

CAPPED = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    import test_writes
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    write, _, _ = test_writes.WRITERS[sys.argv[1]]
    resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))  # under any of these files
    try:
        write(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        print(json.dumps({"error": None}))
    except OSError as exc:
        print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
""")


def _attempt(name, model, photos, target):
    """Run the writer; the error message it ended with (None: it wrote)."""
    write, _, _ = WRITERS[name]
    try:
        write(model, photos, target)
    except WriteError as exc:
        return str(exc)
    return None


def _listing(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _check_untouched(folder, before, target, message, what, reason):
    assert message is not None, "the write should have failed"
    assert str(target) in message and what in message and reason in message, message
    assert _listing(folder) == before  # the previous file intact, nothing new (no temp file)


@pytest.mark.parametrize("name", PARAMS)
def test_a_full_disk_leaves_the_previous_file_and_names_it(name, model_file, photos, tmp_path):
    _, file_name, what = WRITERS[name]
    disk = tmp_path / "disk"
    with tmpfs(disk, "256k") as mounted:
        if not mounted:
            disk.mkdir(exist_ok=True)
        target = disk / file_name
        _previous(name, target)
        if mounted:  # a real full disk
            fill(disk)
            before = _listing(disk)
            message = _attempt(name, model_file, photos, target)
            reason = "the disk is full (0 bytes free in"
        else:  # no mount allowed: a process whose file writes are capped
            before = _listing(disk)
            result = subprocess.run(
                [sys.executable, "-c", CAPPED, name, str(model_file), str(photos), str(target)],
                capture_output=True, text=True, cwd=Path(__file__).parent, timeout=300)
            out = json.loads(result.stdout.splitlines()[-1])
            assert out["error"] is None or out["type"] == "WriteError", out
            message, reason = out["error"], "larger than this process may write"
        _check_untouched(disk, before, target, message, what, reason)


@pytest.mark.parametrize("name", PARAMS)
def test_a_read_only_folder_leaves_the_previous_file_and_names_it(name, model_file, photos,
                                                                   tmp_path):
    _, file_name, what = WRITERS[name]
    folder = tmp_path / "ro"
    with tmpfs(folder, "256k") as mounted:
        if not mounted and os.geteuid() == 0:
            pytest.skip("root without mount: no real read-only folder to be had")
        folder.mkdir(exist_ok=True)
        target = folder / file_name
        _previous(name, target)
        if mounted:
            remount_read_only(folder)
            reason = "is on a read-only file system"
        else:
            folder.chmod(0o555)
            reason = "no permission to write in the folder"
        before = _listing(folder)
        try:
            message = _attempt(name, model_file, photos, target)
        finally:
            if not mounted:
                folder.chmod(0o755)
        _check_untouched(folder, before, target, message, what, reason)


@pytest.mark.parametrize("name", [n for n in WRITERS if n != "weights"])
def test_a_missing_folder_is_named(name, model_file, photos, tmp_path):
    _, file_name, what = WRITERS[name]
    target = tmp_path / "no such folder" / file_name
    message = _attempt(name, model_file, photos, target)
    assert message is not None and str(target) in message and what in message
    assert f"the folder {target.parent} does not exist" in message
    assert not target.parent.exists()


@pytest.mark.parametrize("name", PARAMS)
def test_each_writer_replaces_a_previous_file_when_it_can(name, model_file, photos, tmp_path):
    _, file_name, _ = WRITERS[name]
    target = tmp_path / file_name
    _previous(name, target)
    assert _attempt(name, model_file, photos, target) is None
    assert target.read_bytes() != PREVIOUS and target.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [file_name]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would have made it


# -- the mechanism ---------------------------------------------------------------

def test_an_error_or_ctrl_c_inside_the_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(PREVIOUS)
    for exc in (KeyboardInterrupt(), ValueError("a writer's bug")):
        with pytest.raises(type(exc)):
            with atomic_write(target) as fh:
                fh.write(b"half of the new file")
                raise exc
        assert _listing(tmp_path) == {"t.bin": PREVIOUS}
    write_bytes(target, b"new")
    assert _listing(tmp_path) == {"t.bin": b"new"}


def test_an_error_of_the_callers_own_is_not_called_a_write_error(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(PREVIOUS)
    with pytest.raises(FileNotFoundError) as info:
        with atomic_write(target) as fh:
            fh.write(b"rows so far")
            open(tmp_path / "an input that vanished.png", "rb")
    assert not isinstance(info.value, WriteError)
    assert "an input that vanished.png" in str(info.value)
    assert _listing(tmp_path) == {"t.bin": PREVIOUS}


def test_write_error_keeps_its_cause_and_survives_pickling(tmp_path):
    with pytest.raises(WriteError) as info:
        write_bytes(tmp_path / "missing" / "f.bin", b"x", "the thing")
    exc = info.value
    assert isinstance(exc, OSError) and isinstance(exc.__cause__, FileNotFoundError)
    assert exc.errno == exc.__cause__.errno and exc.filename == str(tmp_path / "missing" / "f.bin")
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.errno, again.filename) == (str(exc), exc.errno, exc.filename)


# -- predictions stream to the file ----------------------------------------------

def test_predictions_are_written_batch_by_batch_and_complete(model_file, photos, tmp_path,
                                                             monkeypatch):
    sizes = []
    original = TransferClassifier.predict_proba

    def counting(self, X):
        sizes.append(len(X))
        return original(self, X)

    monkeypatch.setattr(TransferClassifier, "predict_proba", counting)
    monkeypatch.setattr(cli_predict, "PREDICT_BATCH", 4)
    out = tmp_path / "preds.csv"
    assert cli.main(["--quiet", "predict", str(model_file), str(photos), "--out", str(out)]) == 0
    assert sizes == [4, 4, 2]  # never all images at once
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    paths = sorted(str(p) for p in photos.iterdir())
    assert [r[0] for r in rows[1:]] == paths
    monkeypatch.setattr(TransferClassifier, "predict_proba", original)
    proba = load(model_file).predict_proba(paths)
    np.testing.assert_allclose(np.array([r[2:] for r in rows[1:]], float), proba, atol=2e-6)


def test_unreadable_images_in_several_batches_are_listed_together(model_file, photos, tmp_path,
                                                                  monkeypatch, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "img01.png").write_bytes(b"not a png")
    (folder / "img08.png").write_bytes(b"not a png either")
    monkeypatch.setattr(cli_predict, "PREDICT_BATCH", 4)
    out = tmp_path / "preds.csv"
    out.write_bytes(PREVIOUS)
    assert cli.main(["--quiet", "predict", str(model_file), str(folder), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "2 image(s) could not be read" in err
    assert "img01.png" in err and "img08.png" in err
    assert out.read_bytes() == PREVIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "preds.csv"]
