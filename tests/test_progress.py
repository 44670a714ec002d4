"""Progress you can follow: plain lines in logs, one display per fit, across a search's fits."""

import io

from joblib import Parallel, delayed
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
    assert lines[0].startswith("work: 1/4 steps") and "left" in lines[1]
    assert lines[-1].startswith("work: 4/4 steps") and lines[-1].endswith("(loss 0.5)")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


class _Clock:
    """time.perf_counter as the test sets it."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_the_time_left_is_the_pace_after_the_warm_up_and_nothing_prints_twice(monkeypatch):
    import sktransfer.utils.progress as module

    clock = _Clock()
    monkeypatch.setattr(module, "time", clock)
    out = io.StringIO()
    shown = PlainProgress(11, "Extracting features", unit="img", every=5.0, file=out)
    shown.update(0)  # batches another process computed: none
    clock.now = 10.0  # the first batch: 9 s of loading and compiling, then 1 s
    shown.update(1)
    clock.now = 16.0  # six more at 1 s each
    shown.update(6)
    lines = out.getvalue().splitlines()
    assert lines == ["Extracting features: 1/11 img, 10s",  # no guess from the warm-up
                     "Extracting features: 7/11 img, 16s, about 4s left"]  # not 4 x 16/7
    shown.update(4)
    shown.close()
    shown.close()
    assert out.getvalue().splitlines()[2:] == ["Extracting features: 11/11 img, 16s"]


def test_search_progress_times_its_first_fit_from_the_start(monkeypatch):
    import sktransfer.utils.progress as module

    clock = _Clock()
    monkeypatch.setattr(module, "time", clock)
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    with search_progress(total=4):  # the block opens at 0 s, the first fit ends at 5 s
        clock.now = 5.0  # joblib reports one task done (a search's fit)
        Parallel(n_jobs=1)(delayed(clock.perf_counter)() for _ in range(1))
    assert out.getvalue().splitlines()[0] == "fits: 1/4 fits, 5s, about 15s left"


def test_not_a_terminal_gets_plain_lines():
    assert isinstance(progress(3, "x", file=io.StringIO()), PlainProgress)


def test_one_display_per_phase_names_it(tiny, capsys):
    X, y = tiny
    TransferClassifier(**FAST, unfreeze=1, finetune_epochs=2, verbose=1,
                       head_solver="optimizer").fit(X, y)
    err = capsys.readouterr().err
    # each phase counts (and times) its own epochs: phase 2's are slower than phase 1's
    assert "fit, phase 1 (head): 1/2 epoch" in err and "phase 1 (head): 3/" not in err
    assert "fit, phase 2 (head + last 1 block): 2/2 epoch" in err and "train loss" in err
    TransferClassifier(**FAST, unfreeze=1, finetune_epochs=2, verbose=1).fit(X, y)
    err = capsys.readouterr().err  # an exact phase 1: one line, then phase 2's epochs
    assert "fit, phase 1 (head): solved exactly (L-BFGS), alpha " in err
    assert "fit, phase 2 (head + last 1 block): 2/2 epoch" in err
    TransferClassifier(**FAST).fit(X, y)  # quiet by default
    assert capsys.readouterr().err == ""


def test_search_progress_counts_the_fits_of_a_search(tiny, capsys):
    # (across worker processes: test_dask's search on its cluster)
    X, y = tiny
    search = GridSearchCV(TransferClassifier(**FAST), {"alpha": [0.1, 1.0]}, cv=2)
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
