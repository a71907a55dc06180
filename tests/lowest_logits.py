"""Same checkpoint, two transformers versions, same numbers? (`make test-lowest`, tests/README.md)

    python tests/lowest_logits.py save DIR            # with one transformers: tiny checkpoints of every backbone
    python tests/lowest_logits.py run DIR OUT.npz     # with each transformers: load them, run two polish3 clips
    python tests/lowest_logits.py compare A.npz B.npz # max |A - B| per tensor; exit 1 above --tolerance (1e-5)

`save` writes, seeded: each frame-aligned model (wav2vec2, wav2vec2 with layer-normalised convolutions and a
stable-layer-norm encoder, HuBERT, WavLM, data2vec-audio, Whisper; polish3's 3 classes) and each backbone as
transformers' own plain `*Model` (what a Hub backbone repo holds). `run` loads each one through
`AutoModelForFrameAlignedClassification.from_pretrained` and runs a padded batch of two real polish3 clips (0.93 s
and 0.71 s): the utterance logits, the valid frames' logits and weights α of the frame-aligned models, and the
plain backbones' last hidden state on valid frames (their new head is random, so only the backbone is compared).
A weight that one version fails to load, renames or initialises differently shows as a difference of order 1.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import layer_norm_overrides, polish3_clips, save_plain_backbone, tiny_frame_aligned_model  # noqa: E402


FRAME_ALIGNED = {
    "wav2vec2": ("wav2vec2", {}),
    "wav2vec2-layer-norm": ("wav2vec2", layer_norm_overrides()),
    "hubert": ("hubert", {}),
    "wavlm": ("wavlm", {}),
    "data2vec-audio": ("data2vec-audio", {}),
    "whisper": ("whisper", {}),
}
PLAIN = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")


def save(directory: Path) -> None:
    """Tiny seeded checkpoints under `directory`/frame_aligned/<name> and `directory`/plain/<model_type>."""
    from modeling.collator import make_feature_extractor

    for name, (model_type, overrides) in FRAME_ALIGNED.items():
        if model_type == "whisper":
            from helpers import TINY_WHISPER

            model = _tiny_whisper(TINY_WHISPER)
        else:
            model = tiny_frame_aligned_model(model_type, seed=0, **overrides)
        model.save_pretrained(directory / "frame_aligned" / name)
        make_feature_extractor(model.config).save_pretrained(directory / "frame_aligned" / name)
    for model_type in PLAIN:
        save_plain_backbone(model_type, directory / "plain" / model_type, seed=0)


def _tiny_whisper(settings: dict):
    from helpers import POLISH3_LABELS

    from modeling import WhisperFrameAlignedConfig
    from modeling.modeling_whisper_frame_aligned import WhisperForFrameAlignedClassification

    labels = dict(enumerate(POLISH3_LABELS))
    config = WhisperFrameAlignedConfig(
        **settings, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    torch.manual_seed(0)
    return WhisperForFrameAlignedClassification(config).eval()


def _batch(model) -> dict:
    from modeling import load_audio
    from modeling.collator import make_feature_extractor

    clips = [load_audio(polish3_clips(4)[i][0]) for i in (3, 1)]  # the longest and a shorter (padded) one
    extractor = make_feature_extractor(model.config)
    batch = extractor(clips, sampling_rate=16_000, padding="longest", return_attention_mask=True, return_tensors="pt")
    return dict(batch)


def run(directory: Path) -> dict[str, np.ndarray]:
    """{tensor name: values} for every checkpoint `save` wrote (valid frames only)."""
    from modeling import AutoModelForFrameAlignedClassification

    results = {}
    for name in FRAME_ALIGNED:
        model = AutoModelForFrameAlignedClassification.from_pretrained(directory / "frame_aligned" / name).eval()
        with torch.no_grad():
            out = model(**_batch(model))
        mask = out.frame_mask
        results[f"{name}/logits"] = out.logits.numpy()
        results[f"{name}/frame_logits"] = out.frame_logits[mask].numpy()
        results[f"{name}/frame_weights"] = out.frame_weights[mask].numpy()
    for model_type in PLAIN:
        torch.manual_seed(0)
        model = AutoModelForFrameAlignedClassification.from_pretrained(
            directory / "plain" / model_type, start_new_head=True, num_labels=3
        ).eval()
        with torch.no_grad():
            out = model(**_batch(model), output_hidden_states=True)
        results[f"plain-{model_type}/last_hidden_state"] = out.hidden_states[-1][out.frame_mask].numpy()
    return results


def compare(a: dict, b: dict, tolerance: float) -> int:
    """Prints max |a - b| per tensor (json); returns 1 when a tensor is missing, reshaped or off by > tolerance."""
    report, bad = {}, []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b or a[key].shape != b[key].shape:
            report[key], _ = "missing or shape differs", bad.append(key)
            continue
        difference = float(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)).max())
        report[key] = difference
        if not difference <= tolerance:
            bad.append(key)
    print(json.dumps(report, indent=1))
    print(f"max |difference| {max(v for v in report.values() if isinstance(v, float)):.3g}; tolerance {tolerance}")
    if bad:
        print(f"DIFFERENT beyond {tolerance}: {bad}")
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["save", "run", "compare"])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "save":
        save(args.paths[0])
    elif args.command == "run":
        import transformers

        np.savez(args.paths[1], **run(args.paths[0]))
        print(f"{len(np.load(args.paths[1]).files)} tensors with transformers {transformers.__version__}")
    else:
        return compare(dict(np.load(args.paths[0])), dict(np.load(args.paths[1])), args.tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
