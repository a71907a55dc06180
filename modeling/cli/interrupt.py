"""Ctrl-C in a long-running command (train.py, predict.py, score.py, sweep.py, the timeline CLI): two lines instead
of a KeyboardInterrupt traceback — what is saved, and the command that resumes — and exit code 130 (128 + SIGINT,
what a shell reports for a process that SIGINT ended).

Nothing is lost by stopping there: every file of a run directory, of predict.py's outputs and of score.py's is
written atomically (`modeling.rundir.atomic`: a temporary file renamed into place, removed on any exception,
KeyboardInterrupt included), and the locks are released on the way out.
"""

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path


INTERRUPTED_EXIT_CODE = 130


def the_command(argv: list[str] | None, prog: str) -> str:
    """The command line that was run, shell-quoted, to run again: the interpreter's own (`sys.orig_argv`) when
    `argv` is None (a real command line), else `prog` followed by `argv` (main called in-process)."""
    if argv is None:
        return shlex.join(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    return " ".join([prog, shlex.join([str(a) for a in argv])]).strip()


def interrupted_message(saved: str, command: str, resumes: bool = True) -> str:
    """The two lines printed on Ctrl-C: `saved` (what is on disk, a sentence without its final full stop) and
    `command` (how to go on; under torchrun the whole torchrun command must be given again)."""
    again = "resume" if resumes else "run it again"
    launcher = " (under torchrun: the same torchrun command)" if os.environ.get("TORCHELASTIC_RUN_ID") else ""
    return f"Interrupted (Ctrl-C): {saved}.\nTo {again}, run the same command{launcher}: {command}"


def exits_cleanly_on_interrupt(prog: str, saved: Callable[[list[str] | None], str], resumes: bool = True):
    """Decorate a CLI's `main(argv=None) -> int`: a KeyboardInterrupt prints `interrupted_message` (on stderr, once:
    rank 0 of a distributed run) and returns `INTERRUPTED_EXIT_CODE`.

    Args:
        prog: the command as a user types it ("python train.py"), for calls of main with an explicit argv.
        saved: argv → what is saved so far (e.g. "the run directory runs/demo is kept; last checkpoint ...").
            An error inside it is reported in place of the sentence, never as a traceback.
        resumes: whether running the command again continues where it stopped (else it starts again).
    """

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                if os.environ.get("RANK", "0") != "0":
                    return INTERRUPTED_EXIT_CODE
                _close_progress_bars()
                try:
                    what = saved(argv)
                except Exception as error:  # noqa: BLE001 - the message must come out whatever the state on disk
                    what = f"could not list what is saved ({type(error).__name__}: {error})"
                print(interrupted_message(what, the_command(argv, prog), resumes), file=sys.stderr, flush=True)
                return INTERRUPTED_EXIT_CODE

        return wrapper

    return decorate


def _close_progress_bars() -> None:
    """Close the progress bars left open by the interrupted loop (the Trainer's, predict.py's), so that the message
    is the last thing on the terminal rather than followed by a bar's final redraw."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot redraw must not hide the message
            pass


def newest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The most recently written complete Trainer checkpoint (`fold<k>/stage<s>/checkpoint-N`) of a run directory,
    or None (incomplete ones, which resuming skips, are not counted)."""
    from ..rundir.layout import RunDir
    from ..training.checkpoints import latest_checkpoint

    found = []
    for stage_dir in RunDir(run_dir).stage_dirs():
        latest = latest_checkpoint(stage_dir, remove_incomplete=False)
        if latest:
            found.append(Path(latest))
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def run_dir_saved(run_dir: str | os.PathLike) -> str:
    """What an interrupted train.py leaves: the run directory and its newest checkpoint (or that none is saved
    yet: the interrupted stage starts again from its beginning)."""
    checkpoint = newest_checkpoint(run_dir)
    where = f"last checkpoint {checkpoint}" if checkpoint else "no Trainer checkpoint saved yet"
    return f"the run directory {run_dir} keeps every finished fold and stage ({where})"


__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "exits_cleanly_on_interrupt",
    "interrupted_message",
    "newest_checkpoint",
    "run_dir_saved",
    "the_command",
]
