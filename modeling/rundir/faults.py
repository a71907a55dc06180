"""`fault_point`: the test-only fault injection the crash tests use to stop a process at a named moment."""

import errno
import os
import signal
import sys


FAULT_ENV = "FRAME_ALIGNED_SER_FAULT"
FAULT_LOG_ENV = "FRAME_ALIGNED_SER_FAULT_LOG"
_fault_hits: dict[str, int] = {}


class FaultInjected(RuntimeError):
    """Raised by `fault_point` for a `:raise` fault."""


def fault_point(name: str) -> None:
    """A named moment at which a crash test can kill or interrupt this process (a no-op in normal runs).

    Test-only. Unless the environment variable FRAME_ALIGNED_SER_FAULT is set this is one dictionary lookup.
    `FRAME_ALIGNED_SER_FAULT="<point>:<action>[@N]"` (several separated by commas): the N-th time (default: the
    first) this process reaches a point named `<point>`, or `<point>:...`, write the marker line
    `fault point <name>: <action> (hit N, pid P)` to stderr and, when FRAME_ALIGNED_SER_FAULT_LOG names a file,
    append it there; then `kill` sends SIGKILL to the process itself (as `kill -9` would: nothing runs after it),
    `raise` raises `FaultInjected`, `enospc` raises `OSError(ENOSPC)` as a full disk would, `stop` sends SIGSTOP
    (the process stays alive, frozen at that moment, until the test sends SIGCONT or SIGKILL).

    The points (the last `:` part locates them, so `checkpoint:before-trainer-state` matches both stages and
    `checkpoint:before-trainer-state:stage2` only stage 2; `<location>` is `<parent folder>/<name>`):
        atomic-write:before-rename:<location>        `atomic_write_text`, e.g. `...:fold1/metrics.json`: the new
                                                     text is complete and fsynced in the temporary file, the
                                                     target not replaced yet.
        atomic-directory:before-rename:<location>    `atomic_directory`, e.g. `...:stage1/best`: the new content is
                                                     complete in the temporary directory, the target not replaced.
        atomic-directory:between-renames:<location>  `atomic_directory` over an existing directory: the old one
                                                     moved aside, the new one not in place yet (target absent).
        checkpoint:before-optimizer:<stage>          a Trainer checkpoint folder with model.safetensors (and the
                                                     config) but not yet optimizer.pt, scheduler.pt, rng_state.pth,
                                                     trainer_state.json (`training.stage.StageTrainer`; the
                                                     `cache_frozen_prefix` trainer has no checkpoint points).
        checkpoint:before-trainer-state:<stage>      a Trainer checkpoint folder with everything but
                                                     trainer_state.json (written last).
        train:step:rank<r>:step<n>                   process r's training step n, before its loss is checked for
        NaN/Inf
                                                     (`training.trainer.FrameAlignedTrainer`): one rank of a
                                                     torchrun job can be made to fail.
        lock:acquired:fold<k>                        the fold's lock is held, nothing trained yet
        (`training.run_lock`).
        best:written:<stage>                         `fold<k>/<stage>/best` is in place (`training.stage.train_stage`;
                                                     stage0: `training.stage0.train_stage0`).
        stage0:step<n>                               stage 0's training step n, its loss computed
                                                     (`pretraining.masked_prediction.MaskedPredictionTrainer`).
        stage0:pseudo-labels-written                 `fold<k>/stage0/pseudo_labels` is in place, nothing trained.
        scoring:after-predictions:fold<k>            both best models scored, test_predictions.npz written,
                                                     metrics.json not yet (`training.scoring.fold_metrics`).
        predict:ray:file:<file name>                 a Ray actor is about to predict a block holding that file
                                                     (`inference.ray_engine.BlockPredictor`).
        predict:ray:block<k>:predicted               a Ray actor predicted block k, its results not returned yet.
        predict:ray:part-recorded:block<k>           the Ray driver wrote block k's part files and manifest line,
                                                     not merged yet (`inference.ray_engine.PartFiles.record`).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for fault in spec.split(","):
        point, _, action = fault.strip().rpartition(":")
        action, _, count = action.partition("@")
        if action not in ("kill", "raise", "stop", "enospc") or not point:
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected <point>:kill, :raise, :enospc or :stop, optionally @N")
        if name != point and not name.startswith(point + ":"):
            continue
        hits = _fault_hits[fault] = _fault_hits.get(fault, 0) + 1
        if hits != int(count or 1):
            continue
        marker = f"fault point {name}: {action} (hit {hits}, pid {os.getpid()})\n"
        print(marker, end="", file=sys.stderr, flush=True)
        if os.environ.get(FAULT_LOG_ENV):
            fd = os.open(os.environ[FAULT_LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, marker.encode())
            finally:
                os.close(fd)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected)", name)
        if action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
            continue
        raise FaultInjected(marker.strip())
