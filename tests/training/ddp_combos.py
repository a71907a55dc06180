"""Launched ONCE by `torchrun --nproc_per_node 2` from tests/test_distributed.py: trains stage 2 of fold 1 of a
tiny run with every combination of activation checkpointing × LayerDrop {0, 0.5} × num_trainable_layers {all, 1}
(× the frozen-prefix cache, which needs frozen layers), through the real `train_stage` (our `FrameAlignedTrainer` /
`FrozenPrefixTrainer`, the DDP settings of `stage.ddp_settings`), a few steps each.

Each process writes `<out>/<combo>.rank<r>.json`: the sha256 of its final weights, the DDP settings used and the
number of layers LayerDrop skipped in that process. The test compares the ranks.

    torchrun --nproc_per_node 2 tests/training/ddp_combos.py OUT_DIR [COMBO ...]
"""

import hashlib
import itertools
import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback


HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent), str(HERE)]  # this checkout's `modeling`, then the helpers

from runs import write_config  # noqa: E402

from modeling.data.folds import make_folds, split_fold  # noqa: E402
from modeling.rundir.layout import RunDir  # noqa: E402
from modeling.training.checkpoints import initial_checkpoint  # noqa: E402
from modeling.training.experiment import load_run_dataset  # noqa: E402
from modeling.training.run_config import resolve_config  # noqa: E402
from modeling.training.stage import cpu_distributed, train_stage  # noqa: E402


def combos() -> dict[str, dict]:
    """name → (activation checkpointing, layerdrop, num_trainable_layers, cache_frozen_prefix)."""
    found = {}
    grid = itertools.product((False, True), (0.0, 0.5), (None, 1), (False, True))
    for checkpointing, layerdrop, trainable, cache in grid:
        if cache and trainable is None:
            continue  # the cache needs frozen layers
        name = f"ckpt{int(checkpointing)}-ld{layerdrop}-train{trainable or 'all'}-cache{int(cache)}"
        found[name] = dict(checkpointing=checkpointing, layerdrop=layerdrop, trainable=trainable, cache=cache)
    return found


def weights_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Record(TrainerCallback):
    """At the end of training: this process's weights hash, DDP settings and LayerDrop skips."""

    def __init__(self, path: Path):
        self.path, self.layers_run = path, 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        for layer in model.wav2vec2.encoder.layers:
            layer.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        if module.training:
            self.layers_run += 1

    def on_train_end(self, args, state, control, model=None, **kwargs):
        record = {
            "sha256": weights_sha256(model),
            "steps": state.global_step,
            "find_unused_parameters": args.ddp_find_unused_parameters,
            "activation_checkpointing": args.activation_checkpointing,
            "world_size": args.world_size,
            "layers_run": self.layers_run,
        }
        self.path.write_text(json.dumps(record))


def main(out: Path, selected: list[str]):
    state = PartialState(cpu=cpu_distributed())
    out.mkdir(parents=True, exist_ok=True)
    base = resolve_config(write_config(out / f"base.rank{state.process_index}.yaml"))
    dataset = load_run_dataset(base)
    fold = make_folds(dataset, base["data"]["folds"], base["data"]["num_folds"])[0]
    splits = split_fold(dataset, fold)
    label_names = dataset.features["label"].names
    for name, combo in combos().items():
        if selected and name not in selected:
            continue
        config = json.loads(json.dumps(base))
        config["model"]["config_overrides"] = {"layerdrop": combo["layerdrop"]}
        config["training"]["activation_checkpointing"] = combo["checkpointing"]
        config["stage2"].update(
            epochs=1, batch_size=2, num_trainable_layers=combo["trainable"], cache_frozen_prefix=combo["cache"]
        )
        run = RunDir(out / name)
        init_path = initial_checkpoint(config, run, label_names, state)
        record = Record(out / f"{name}.rank{state.process_index}.json")
        train_stage("stage2", fold, splits, init_path, config, run, label_names, state, [record])
        if state.is_main_process:
            print(f"combo {name}: done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
