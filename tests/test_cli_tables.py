"""The command line on a CSV file of image paths and targets: the task guessed, said and used."""

import csv
import io
import re

import numpy as np
import pytest
from PIL import Image

from sktransfer import TransferClassifier, TransferRegressor, load
from sktransfer.cli import main
from sktransfer.inputs.tables import TableError, guess_task, read_table

from conftest import blobs

pytest.importorskip("pandas")

FAST = ["--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--quiet"]


@pytest.fixture
def photos(tmp_path):
    """24 PNG files in tmp_path/photos, and their class (0 or 1)."""
    X, y = blobs(24)
    (tmp_path / "photos").mkdir()
    names = []
    for i, img in enumerate(X):
        names.append(f"photos/{i}.png")
        Image.fromarray(img).save(tmp_path / names[-1])
    return names, y


def _csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


@pytest.mark.parametrize("columns, task, why", [
    ({"energy": ["1.5", "2", "3"]}, "regression", "column 'energy' holds numbers that are not"),
    ({"code": ["1", "2", "1"]}, "classification", "column 'code' holds 2 whole numbers"),
    ({"kind": ["cat", "dog", "1"]}, "classification", "column 'kind' holds text labels"),
    ({"tags": ["a;b", "b", ""]}, "multilabel", "column 'tags' holds ';'-separated tags"),
    ({"a": ["0", "1"], "b": ["1", "1"]}, "multilabel", "columns 'a', 'b' hold only 0 and 1"),
    ({"kj": ["100", "200"], "g": ["2", "3"]}, "regression", "columns 'kj', 'g' hold numbers"),
])
def test_the_task_is_guessed_from_the_targets(columns, task, why):
    guessed, reason = guess_task(columns)
    assert guessed == task and reason.startswith(why)


# Columns shaped like real ones: whole numbers are classes only when they repeat like classes.
_RNG = np.random.RandomState(0)
REAL_COLUMNS = {
    "digit": (_RNG.randint(0, 10, 150), "classification", "10 whole numbers, each seen"),
    "objects": (_RNG.randint(0, 6, 150), "classification", "6 whole numbers, each seen"),
    "year": (_RNG.randint(1990, 2021, 150), "regression", "quantities, not codes: 31 distinct"),
    "decade": (_RNG.choice([1990, 2000, 2010], 150), "regression", "values up to 2010"),
    "kj": (_RNG.randint(200, 3000, 150) // 10 * 10, "regression", "quantities, not codes"),
    "sort_order": (_RNG.permutation(360), "regression", "360 distinct values in 360 rows"),
    "grade": (_RNG.randint(1, 15, 40), "regression", "times on median, fewer than 5"),
}


@pytest.mark.parametrize("name", REAL_COLUMNS)
def test_whole_numbers_are_classes_only_when_they_repeat_like_classes(name):
    values, task, why = REAL_COLUMNS[name]
    guessed, reason = guess_task({name: [str(v) for v in values]})
    assert guessed == task and why in reason, reason
    assert reason.startswith(f"column {name!r}")
    if task == "regression":
        assert "--task classification" in reason  # the way back, when the guess is wrong


def test_text_in_several_targets_is_refused():
    with pytest.raises(TableError, match="target columns 'kind' hold text"):
        guess_task({"kind": ["a", "b"], "kj": ["1.5", "2"]})


def test_the_table_is_checked_naming_column_and_line(tmp_path):
    table = _csv(tmp_path / "t.csv", ["image", "energy", "water"],
                 [["a.png", "1.5", "3"], ["b.png", "", "4"]])
    with pytest.raises(TableError, match="2 columns besides 'image'.*--target"):
        read_table(table)
    with pytest.raises(TableError, match="no column 'fat'; its columns are"):
        read_table(table, targets=["fat"])
    with pytest.raises(TableError, match="column 'energy' is empty on line\\(s\\) 3"):
        read_table(table, targets=["energy"])
    with pytest.raises(TableError, match="no column 'path'"):
        read_table(table, path_column="path", targets=["water"])
    read = read_table(table, targets=["water"], task="regression")
    assert read.paths == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]  # the CSV's folder
    assert read.why == "--task regression" and list(read.y.columns) == ["water"]
    with pytest.raises(TableError, match="column 'image' holds text; a regression needs"):
        read_table(table, path_column="water", targets=["image"], task="regression")


def test_regression_from_a_csv_trains_predicts_and_evaluates(photos, tmp_path, capsys):
    names, y = photos
    energy = 400.0 + 900 * y + np.linspace(0, 1, len(y))
    table = _csv(tmp_path / "food.csv", ["image", "energy", "note"],
                 [[n, f"{e:.2f}", "x"] for n, e in zip(names, energy)])
    model = tmp_path / "m.sktransfer"
    code = main(["train", str(table), "--target", "energy", "--epochs", "10", "--lr", "0.01",
                 "--loss", "huber", "--out", str(model), *FAST[:-1]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert ("24 images in" in out and "task: regression (column 'energy' holds numbers that "
            "are not whole; --task changes it)" in out)
    assert "held-out R² (5 images, test size 0.2):" in out and "energy: R² " in out
    reg = load(model)
    assert type(reg) is TransferRegressor and list(reg.target_names_) == ["energy"]
    assert reg.get_params()["loss"] == "huber"
    assert reg.get_params()["hidden_units"] == (256,)  # the regressor's own default head
    assert main(["predict", str(model), str(tmp_path / "photos" / "0.png"), "--quiet"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "energy"] and float(rows[1][1]) == pytest.approx(
        reg.predict([str(tmp_path / "photos" / "0.png")])[0], rel=1e-5)
    report = tmp_path / "r.html"
    assert main(["evaluate", str(model), str(table), "--report", str(report), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("R²: ") and "energy: R² " in out and "MAE " in out
    assert 'id="per-output"' in report.read_text()


def test_tags_from_a_csv_train_a_multilabel_classifier(photos, tmp_path, capsys):
    names, y = photos
    tags = ["salty;crisp" if c else "sweet" for c in y]
    table = _csv(tmp_path / "tags.csv", ["path", "tags"], list(zip(names, tags)))
    model = tmp_path / "m.sktransfer"
    assert main(["train", str(table), "--epochs", "10", "--lr", "0.01", "--out", str(model),
                 *FAST[:-1]]) == 0
    out = capsys.readouterr().out
    assert "task: multilabel (column 'tags' holds ';'-separated tags" in out
    assert "micro F1" in out
    clf = load(model)
    assert type(clf) is TransferClassifier and list(clf.classes_) == ["crisp", "salty", "sweet"]
    image = str(tmp_path / names[1])
    assert main(["predict", str(model), image, "--quiet"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "tags", "p_crisp", "p_salty", "p_sweet"]
    predicted = clf.predict([image])[0]
    assert rows[1][1] == ";".join(t for t, on in zip(clf.classes_, predicted) if on)
    assert main(["evaluate", str(model), str(table), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("micro F1: ")


def test_the_task_can_be_chosen_and_a_folder_stays_a_classifier(photos, tmp_path, capsys):
    names, y = photos
    table = _csv(tmp_path / "codes.csv", ["path", "grade"],
                 [[n, str(3 + 4 * c)] for n, c in zip(names, y)])
    model = tmp_path / "m.sktransfer"
    assert main(["train", str(table), "--task", "regression", "--epochs", "2",
                 "--out", str(model), *FAST]) == 0
    assert type(load(model)) is TransferRegressor
    assert main(["train", str(tmp_path / "photos"), "--task", "regression", *FAST]) == 1
    assert "--task regression needs a CSV file" in capsys.readouterr().err


def test_classes_too_small_to_split_are_named_in_one_line(photos, tmp_path, capsys):
    names, y = photos
    # codes that repeat like classes (so the guess is classification), two of them seen once
    codes = [str(v) for v in y[:-2]] + ["7", "9"]
    table = _csv(tmp_path / "codes.csv", ["image", "code"], list(zip(names, codes)))
    for extra, split in [([], "the held-out split"), (["--cv", "5"], "--cv 5")]:
        assert main(["train", str(table), "--out", str(tmp_path / "m.sktransfer"), *FAST,
                     *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert (f"2 of 4 classes have fewer than {5 if extra else 2} images, too few for "
                f"{split}: 7 (1), 9 (1)") in err[0]
        assert "--task regression" in err[0]  # the column is numeric
        assert not (tmp_path / "m.sktransfer").exists()


def _tag_table(photos, tmp_path):
    """A ';' tag column as a spreadsheet holds one: a common tag pair, a tag of one class,
    empty cells (no tag), a rare tag on two images and a tag on one."""
    names, y = photos
    tags = ["salty;crisp" if c else "sweet" for c in y]
    for i in (0, 1, 2):
        tags[i] = ""  # untagged images
    tags[3] += "; burnt"
    tags[5] += ";burnt"
    tags[7] += ";smoky"
    return _csv(tmp_path / "tags.csv", ["path", "tags"], list(zip(names, tags))), tags


def test_a_real_tag_column_trains_reports_and_evaluates_by_tag_name(photos, tmp_path):
    from cli_helpers import run_here

    table, _ = _tag_table(photos, tmp_path)
    model, report = tmp_path / "m.sktransfer", tmp_path / "m.report.html"
    run = run_here("train", table, "--epochs", "4", "--out", model, *FAST[:-1])
    assert run.returncode == 0, run.stderr
    assert ("dropped 2 of 5 tags, on fewer than 5 images (--min-count): smoky (1), burnt (2)"
            in run.stdout)
    assert "3 image(s) have no tag (an empty cell, or only dropped tags)" in run.stdout
    clf = load(model)
    assert list(clf.classes_) == ["crisp", "salty", "sweet"]
    # the held-out report (it used to die here, passing column positions to explain)
    page = report.read_text()
    assert 'id="per-label"' in page and "<td class=\"name\">crisp</td>" in page
    run = run_here("evaluate", model, table, "--report", tmp_path / "e.html")
    assert run.returncode == 0, run.stderr
    # the CSV's dropped tags are not the model's: left out, said once
    assert run.stderr.count("tag(s) the model does not know") == 1
    assert "'burnt', 'smoky'" in run.stderr
    assert 'id="per-label"' in (tmp_path / "e.html").read_text()


def test_a_tag_on_no_training_image_is_kept_and_predicted_absent(photos, tmp_path):
    from cli_helpers import run_here

    table, tags = _tag_table(photos, tmp_path)
    model = tmp_path / "m.sktransfer"
    run = run_here("train", table, "--min-count", "1", "--cv", "3", "--epochs", "2",
                   "--out", model, *FAST)
    assert run.returncode == 0, run.stderr
    # 'smoky' is on one image: the fold that scores it trains without it, and says so
    lines = [line for line in run.stderr.splitlines() if "no training image" in line]
    assert len(lines) == 1 and "'smoky'; the model predicts them absent" in lines[0]
    assert list(load(model).classes_) == ["burnt", "crisp", "salty", "smoky", "sweet"]


def test_an_empty_cell_of_a_label_column_names_the_multilabel_way(photos, tmp_path):
    names, y = photos
    labels = ["cat" if c else "dog" for c in y]
    labels[4] = ""
    table = _csv(tmp_path / "labels.csv", ["path", "label"], list(zip(names, labels)))
    with pytest.raises(TableError, match=r"column 'label' is empty on line\(s\) 6; fill them "
                       r"or drop those rows \(if it lists ';'-separated tags, --task "
                       "multilabel reads an empty cell as no tags"):
        read_table(table)
    tagged = read_table(table, task="multilabel")
    assert list(tagged.y.columns) == ["cat", "dog"] and tagged.y.iloc[4].sum() == 0


def test_predict_takes_a_csv_and_passes_its_columns_through(photos, tmp_path):
    from cli_helpers import run_here

    names, y = photos
    labels = ["cat" if c else "dog" for c in y]
    table = _csv(tmp_path / "pets.csv", ["image", "label", "note"],
                 [[n, lab, f"shot {i}, indoors"] for i, (n, lab) in enumerate(zip(names, labels))])
    model = tmp_path / "m.sktransfer"
    assert run_here("train", table, "--target", "label", "--epochs", "2", "--out", model,
                    *FAST).returncode == 0
    out = tmp_path / "p.csv"
    run = run_here("predict", model, table, "--out", out, "--quiet")
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(out.open()))
    # the CSV's own columns as written; the prediction's 'label' renamed beside the true one
    assert rows[0] == ["image", "label", "note", "predicted_label", "p_cat", "p_dog"]
    assert [r[:3] for r in rows[1:]] == [[n, lab, f"shot {i}, indoors"] for i, (n, lab)
                                         in enumerate(zip(names, labels))]
    clf = load(model)
    assert [r[3] for r in rows[1:]] == list(clf.predict([str(tmp_path / n) for n in names]))
    # evaluate counts its images aloud, and those of classes the model does not know
    birds = _csv(tmp_path / "birds.csv", ["image", "label"],
                 [[n, "bird" if i < 2 else lab] for i, (n, lab) in enumerate(zip(names, labels))])
    run = run_here("evaluate", model, birds)
    assert run.returncode == 0, run.stderr
    assert "warning: classes not known to the model: bird" in run.stderr
    assert re.search(r"^images: 24 \(2 of classes the model does not know\); time: \d+\.\d s$",
                     run.stdout, re.M), run.stdout
    run = run_here("predict", model, tmp_path / "photos", "--path-column", "image")
    assert run.returncode == 1 and "--path-column names a column of a CSV file" in run.stderr
    run = run_here("predict", model, table, "--path-column", "photo")
    assert run.returncode == 1 and "has no column 'photo'" in run.stderr


def test_copies_are_counted_aloud_and_never_split_from_their_original(photos, tmp_path):
    import shutil

    from cli_helpers import run_here

    from sktransfer import clear_caches

    clear_caches()  # the same photos, extracted by earlier tests, are in the memory cache
    names, y = photos
    rows = [[n, "cat" if c else "dog"] for n, c in zip(names, y)]
    for i in range(0, 24, 2):  # every other photo also under a second name
        shutil.copy(tmp_path / names[i], tmp_path / f"photos/copy{i}.png")
        rows.append([f"photos/copy{i}.png", rows[i][1]])
    table = _csv(tmp_path / "pets.csv", ["path", "label"], rows)
    run = run_here("train", table, "--epochs", "1", "--out", tmp_path / "m.sktransfer",
                   *FAST[:-1])
    assert run.returncode == 0, run.stderr
    assert "12 image(s) repeat another's content (the same file bytes)" in run.stdout
    # the fit extracts each content once and says so; the held-out images are all new to it
    # (a copy of a training image would be found in the activation cache)
    computed = [line for line in run.stderr.splitlines() if "images to compute" in line]
    assert "(10 copies of another image's content)" in computed[0]  # the fit's
    assert "already in the cache" not in computed[1], computed  # the held-out prediction's
    run = run_here("train", table, "--epochs", "1", "--cv", "3", "--out",
                   tmp_path / "m.sktransfer", *FAST)
    assert run.returncode == 0, run.stderr
