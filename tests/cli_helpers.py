"""The ``sktransfer`` command run inside the test process: faster than a subprocess (no
interpreter and torch to start), for the tests that check what it says and returns."""

import contextlib
import io
import types


def run_here(*args):
    """``main(args)``'s exit code (argparse's too) and what it printed."""
    from sktransfer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
