"""Progress you can follow: plain lines in logs, one display per fit, across a search's fits."""

import io

import pytest
from joblib import Parallel
from sklearn.model_selection import GridSearchCV, cross_val_score

from sktransfer import TransferClassifier, search_progress
from sktransfer.utils.progress import PlainProgress, progress

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


def test_plain_progress_writes_lines_without_terminal_codes():
    out = io.StringIO()
    shown = PlainProgress(4, "work", unit="steps", every=0.0, file=out)
    for _ in range(4):
        shown.update()
    shown.set_postfix_str("loss 0.5")
    shown.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("work: 1/4 steps") and "left" in lines[0]
    assert lines[-1].startswith("work: 4/4 steps") and lines[-1].endswith("(loss 0.5)")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_not_a_terminal_gets_plain_lines():
    assert isinstance(progress(3, "x", file=io.StringIO()), PlainProgress)


def test_one_display_per_phase_names_it(tiny, capsys):
    X, y = tiny
    TransferClassifier(**FAST, unfreeze=1, finetune_epochs=2, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    # each phase counts (and times) its own epochs: phase 2's are slower than phase 1's
    assert "fit, phase 1 (head): 1/2 epoch" in err and "phase 1 (head): 3/" not in err
    assert "fit, phase 2 (head + last 1 block): 2/2 epoch" in err and "train loss" in err
    TransferClassifier(**FAST).fit(X, y)  # quiet by default
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_search_progress_counts_the_fits_of_a_search(tiny, capsys, n_jobs):
    X, y = tiny
    search = GridSearchCV(TransferClassifier(**FAST), {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=n_jobs)
    original = Parallel.print_progress
    with search_progress(search):  # 2 candidates x 2 splits
        search.fit(X, y)
    assert Parallel.print_progress is original  # joblib is left as it was
    err = capsys.readouterr().err
    assert "fits: 1/4 fits" in err and "left" in err and "fits: 4/4 fits" in err


def test_search_progress_without_a_total_counts(tiny, capsys):
    X, y = tiny
    with search_progress(desc="folds"):
        cross_val_score(TransferClassifier(**FAST), X, y, cv=3)
    assert "folds: 3 fits" in capsys.readouterr().err
