"""Every Python snippet of README.md runs as written, with Hub ids and run folders mapped to tiny local models
(offline) and placeholder file names to real clips."""

import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import soundfile as sf
from helpers import POLISH3, REPO, save_plain_backbone, tiny_config
from runs import save_published

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


@pytest.mark.slow
def test_every_readme_python_snippet_runs(tmp_path):
    checkpoint = save_published(tmp_path / "checkpoint")  # as on the Hub (custom_pipelines: trust_remote_code)
    local = tmp_path / "best"  # as train.py writes fold<k>/stage<s>/best
    # 6 layers: the README's stage 2 trains the top 6 (num_trainable_layers is checked against the depth)
    Wav2Vec2ForFrameAlignedClassification(tiny_config(num_hidden_layers=6)).save_pretrained(local)
    make_feature_extractor().save_pretrained(local)
    backbone = tmp_path / "backbone"
    save_plain_backbone("wav2vec2", backbone, num_hidden_layers=6)
    clip = POLISH3 / "audio" / "m1.a_nie_1.flac"
    shutil.copy(clip, tmp_path / "speech.flac")
    shutil.copy(POLISH3 / "audio" / "m2.n_nie_1.flac", tmp_path / "b.flac")
    data, rate = sf.read(POLISH3 / "audio" / "m3.s_tak_1.flac")
    sf.write(tmp_path / "a.wav", data, rate)
    mapping = {  # what a snippet names → what exists offline
        "facebook/wav2vec2-base": str(backbone),
        "runs/demo/fold1/stage2/best": str(local),
        "runs/demo/fold5/stage2/best": str(local),
        "runs/iemocap/fold1/stage1/best": str(local),
        "ORG/NAME-fold{k}": str(checkpoint),
        "ORG/NAME-fold1": str(checkpoint),
        "data/polish3/": f"{POLISH3}/",
        "microsoft/wavlm-base-plus": str(tmp_path / "wavlm"),
        "facebook/hubert-base-ls960": str(tmp_path / "hubert"),
    }
    for model_type in ("wavlm", "hubert"):  # tiny checkpoints saved with transformers' own classes
        save_plain_backbone(model_type, tmp_path / model_type)
    blocks = readme_blocks()
    assert len(blocks) >= 7
    prelude = textwrap.dedent(f"""
        import torch
        from modeling.audio import load_audio
        from modeling.collator import make_feature_extractor
        waveform = load_audio({str(clip)!r})
        _batch = make_feature_extractor()([waveform, waveform[:8000]], sampling_rate=16000, padding=True,
                                          return_attention_mask=True, return_tensors="pt")
        input_values, attention_mask, labels = _batch["input_values"], _batch["attention_mask"], torch.tensor([0, 1])
    """)
    runner = prelude + "\nimport traceback\nBLOCKS = []\n"
    for block in blocks:
        for name, local in mapping.items():
            block = block.replace(name, local)
        runner += f"BLOCKS.append({block!r})\n"
    runner += textwrap.dedent("""
        for number, code in enumerate(BLOCKS, start=1):
            try:
                exec(compile(code, f"README block {number}", "exec"), dict(globals()))
            except Exception:
                print(f"README python block {number} failed:\\n{code}", flush=True)
                raise
            print(f"block {number} ok", flush=True)
    """)
    result = subprocess.run(
        [sys.executable, "-c", runner],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
            "HF_HOME": str(tmp_path / "hf"),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count(" ok") == len(blocks)
