"""Trainer checkpoints a crash test can stop half-way and a resume can verify: shared by every Trainer of a run
(`FrameAlignedTrainer`, stage 0's `MaskedPredictionTrainer`)."""

from pathlib import Path

from ..rundir.atomic import plain_modes
from ..rundir.faults import fault_point
from ..rundir.integrity import write_manifest


class VerifiedCheckpointMixin:
    """Mixed in before `transformers.Trainer`: fault points between a checkpoint's files, and `checksums.json`
    (`integrity.write_manifest`) written after them, verified on resume (`training.checkpoints`).

    Fault points (no-ops unless FRAME_ALIGNED_SER_FAULT is set; see `faults.fault_point`): `Trainer._save_checkpoint`
    writes model.safetensors, optimizer.pt + scheduler.pt, rng_state.pth, then trainer_state.json;
    `checkpoint:before-optimizer:<stage>` and `checkpoint:before-trainer-state:<stage>` mark the moments between.
    """

    def before_checkpoint(self):
        """Called before each checkpoint is saved (e.g. to refuse saving a model trained on non-finite values)."""

    def _save_optimizer_and_scheduler(self, output_dir):
        fault_point(f"checkpoint:before-optimizer:{Path(self.args.output_dir).name}")
        super()._save_optimizer_and_scheduler(output_dir)

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        fault_point(f"checkpoint:before-trainer-state:{Path(self.args.output_dir).name}")

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint, then its files' sizes and SHA-256 (`integrity.write_manifest`), verified on
        resume. A failed write (e.g. a full disk) raises an `OSError` naming the checkpoint and the cause; the
        partial checkpoint is never resumed from (no trainer_state.json / no manifest)."""
        self.before_checkpoint()
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                plain_modes(folder)  # readable by a colleague as any file the user writes (the umask decides)
                write_manifest(folder)
        except OSError as error:
            raise OSError(
                error.errno,
                f"Saving the checkpoint {folder} failed: {error.strerror or error} (file "
                f"{error.filename or '?'}). The previous checkpoints are intact; free space and run the same "
                "command again to resume.",
            ) from error


__all__ = ["VerifiedCheckpointMixin"]
