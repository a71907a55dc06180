"""Channel perturbations of `score.py --perturb` (modeling/evaluation/perturbations.py): each effect measured on real
speech or noise (SNR, band limits, RT60, DRR, bitrate), determinism, and bad specs → errors naming the flag."""

import numpy as np
import pytest
from helpers import POLISH3
from scipy.signal import welch

from modeling.audio import load_audio
from modeling.evaluation import perturbations as P
from modeling.evaluation.perturbations import (
    PerturbationError,
    decay_rt60_s,
    encoded_bitrate_kbps,
    parse_perturbation,
    snr_db,
    synthetic_rir,
)


@pytest.fixture(scope="module")
def clip():
    return load_audio(POLISH3 / "audio" / "m1.a_nie_1.flac")


@pytest.mark.parametrize("spec", ["noise:snr_db=10", "noise:snr_db=-5,color=pink", "noise:snr_db=30"])
def test_noise_has_the_stated_snr_and_is_seeded(clip, spec):
    perturbation = parse_perturbation(spec)
    noisy = perturbation.apply(clip, seed=0, utterance="a.wav")
    assert noisy.dtype == np.float32 and len(noisy) == len(clip)
    assert snr_db(clip, noisy) == pytest.approx(perturbation.params["snr_db"], abs=0.1)
    assert np.array_equal(noisy, perturbation.apply(clip, seed=0, utterance="a.wav"))  # same seed, same clip
    assert not np.array_equal(noisy, perturbation.apply(clip, seed=1, utterance="a.wav"))
    assert not np.array_equal(noisy, perturbation.apply(clip, seed=0, utterance="b.wav"))


def test_pink_noise_has_falling_power():
    rng = np.random.default_rng(0)
    noise = P.add_noise(np.zeros(64_000) + 1e-3 * rng.standard_normal(64_000), -40, rng, "pink")
    frequencies, power = welch(noise, fs=16_000, nperseg=4096)
    low, high = (
        power[(frequencies > 100) & (frequencies < 200)].mean(),
        power[(frequencies > 3200) & (frequencies < 6400)].mean(),
    )
    assert 10 * np.log10(low / high) == pytest.approx(10 * np.log10(32), abs=2.0)  # 1/f: 5 octaves ≈ 15 dB


@pytest.mark.parametrize("codec", ["ulaw", "gsm"])
def test_telephone_keeps_300_to_3400_hz_only(codec):
    """White noise through the channel: flat inside 300–3400 Hz, ≥ 40 dB down above 4 kHz (the 8 kHz sample rate's
    Nyquist limit) and ≥ 20 dB down below 100 Hz; 16 kHz, same length out."""
    white = 0.1 * np.random.default_rng(1).standard_normal(32_000)
    out = parse_perturbation(f"telephone:codec={codec}").apply(white)
    assert len(out) == len(white)
    frequencies, power = welch(out, fs=16_000, nperseg=1024)
    band = power[(frequencies > 500) & (frequencies < 3000)].mean()
    assert 10 * np.log10(power[frequencies > 4200].max() / band) < -40
    if codec == "ulaw":  # GSM's LPC coder colours the spectrum and its coding noise fills the low band again
        assert 10 * np.log10(power[(frequencies > 0) & (frequencies < 100)].mean() / band) < -20
        passband = 10 * np.log10(power[(frequencies > 500) & (frequencies < 3000)] / band)
        assert np.abs(passband).max() < 3


@pytest.mark.parametrize(("codec", "low", "high"), [("mp3", 16, 40), ("vorbis", 30, 80), ("opus", 20, 60)])
def test_lossy_codecs_roundtrip_aligned_at_their_bitrate(clip, codec, low, high):
    out = parse_perturbation(codec).apply(clip)
    assert len(out) == len(clip)
    assert 10 < snr_db(clip, out) < 60  # lossy, yet aligned (a misaligned decode has an SNR near 0 dB)
    assert low < encoded_bitrate_kbps(clip, codec, 0.9) < high


def test_synthetic_rir_has_the_stated_rt60_and_drr():
    rng = np.random.default_rng(0)
    for rt60 in (0.3, 0.8):
        rir = synthetic_rir(rt60, drr_db=3.0, rng=rng)
        assert decay_rt60_s(rir) == pytest.approx(rt60, rel=0.1)
        assert rir[0] == 1.0 and len(rir) == round(1.2 * rt60 * 16_000)
        assert 10 * np.log10(1.0 / np.sum(rir[1:] ** 2)) == pytest.approx(3.0)
    # By hand: an impulse through the reverb is the (RMS-rescaled) RIR itself.
    impulse = np.zeros(16_000)
    impulse[0] = 1.0
    out = parse_perturbation("reverb:rt60_s=0.4").apply(impulse, seed=5, utterance="x")
    rir = synthetic_rir(0.4, 0.0, np.random.default_rng([5, *P_seed("reverb:rt60_s=0.4", "x")]))
    assert np.allclose(out[: len(rir)] / out[0], rir, atol=1e-6)


def P_seed(spec, name):
    import zlib

    return [zlib.crc32(spec.encode()), zlib.crc32(name.encode())]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("noise:snr_db=loud", "--perturb noise:snr_db=loud: snr_db must be a number, got 'loud'"),
        ("noise", "--perturb noise: noise needs snr_db=<dB>"),
        ("static:snr_db=3", "--perturb static:snr_db=3: unknown perturbation 'static'"),
        ("noise:snr=3", "--perturb noise:snr=3: noise takes ['color', 'snr_db'] as key=value, got 'snr=3'"),
        ("telephone:codec=amr", "codec must be one of ['gsm', 'ulaw'], got 'amr'"),
        ("mp3:compression_level=2", "compression_level must be in [0, 1], got 2.0"),
        ("reverb:rt60_s=nan", "rt60_s must be finite"),
    ],
)
def test_bad_specs_name_the_flag(spec, message):
    with pytest.raises(PerturbationError) as error:
        parse_perturbation(spec)
    assert message in str(error.value)


@pytest.mark.bad_input
def test_a_codec_libsndfile_cannot_write_is_refused(monkeypatch):
    import soundfile as sf

    real = sf.available_subtypes
    monkeypatch.setattr(sf, "available_subtypes", lambda f=None: {k: v for k, v in real(f).items() if k != "OPUS"})
    with pytest.raises(PerturbationError, match=r"--perturb opus: this libsndfile \(.*\) cannot write OGG/OPUS"):
        parse_perturbation("opus")


@pytest.mark.bad_input
def test_score_py_reports_a_bad_perturbation_before_loading_anything(tmp_path, capsys):
    from modeling.cli.score import main

    code = main(
        [
            "--run-dir",
            str(tmp_path / "none"),
            "--config",
            "x.yaml",
            "--output-dir",
            str(tmp_path / "o"),
            "--perturb",
            "telephone",
            "noise:snr_db=ten",
        ]
    )
    assert code == 2 and "--perturb noise:snr_db=ten: snr_db must be a number, got 'ten'" in capsys.readouterr().err
