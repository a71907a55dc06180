"""Does it survive a real channel? Deterministic, seeded channel effects for `score.py --perturb` (16 kHz mono float
waveforms in, same length out).

Specs (`--perturb NAME[:key=value,...]`, repeatable):

- `noise:snr_db=10[,color=white|pink]`: additive generated Gaussian noise (white: flat spectrum; pink: 1/f power,
  white noise shaped in the frequency domain), scaled so that 10·log10(Σ clean² / Σ noise²) equals `snr_db` exactly
  over the whole clip.
- `telephone[:codec=ulaw|gsm]`: the narrow-band telephone channel: band-pass 300–3400 Hz (4th-order Butterworth,
  zero-phase; ITU-T G.712's pass band), resampled to 8 kHz (soxr), encoded and decoded by libsndfile with G.711
  μ-law (`ulaw`, default) or GSM 06.10 full rate (`gsm`), resampled back to 16 kHz.
- `mp3`, `vorbis`, `opus` `[:compression_level=0.9]`: encoded and decoded by libsndfile (MPEG layer III, Ogg
  Vorbis, Ogg Opus) at libsndfile's compression level in [0, 1] (0 = highest bitrate; libsndfile sets no bitrate
  directly, so the achieved bitrate is measured and reported: at 16 kHz mono, MP3 0.5 ≈ 90 kbps, 0.9 ≈ 26 kbps;
  Opus 0.9 ≈ 37 kbps; Vorbis 0.9 ≈ 53 kbps). The decoder's leading delay (MP3 at low bitrates: 1105 samples) is
  removed at the cross-correlation maximum (lag ≤ 0.256 s), then the signal is cut or zero-padded to the input's
  length.
- `reverb:rt60_s=0.5[,drr_db=0]`: convolution with a synthetic room impulse response after Polack's statistical
  model: a unit direct path at t = 0 plus a Gaussian-noise tail starting 2.5 ms later with amplitude decaying as
  exp(−3·ln(10)·t / RT60) (60 dB of energy in RT60 seconds), scaled so the direct-to-reverberant energy ratio is
  `drr_db`, 1.2·RT60 s long; the output is cut to the input's length and rescaled to the input's RMS.

Every random draw is seeded by (the seed, the perturbation, the utterance's name): the same utterance gets the same
noise in every run and whatever the order. Raises `PerturbationError` (a ValueError) naming `--perturb` for an
unknown name or key, a value that is not a number, a value out of range, or a codec libsndfile cannot write.
"""

import io
import math
import zlib
from dataclasses import dataclass, field

import numpy as np


SAMPLING_RATE = 16_000
TELEPHONE_RATE = 8_000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS")}
TELEPHONE_CODECS = {"ulaw": "ULAW", "gsm": "GSM610"}
SPECS = {  # name → {key: default}
    "noise": {"snr_db": None, "color": "white"},
    "telephone": {"codec": "ulaw"},
    **{name: {"compression_level": 0.9} for name in CODECS},
    "reverb": {"rt60_s": 0.5, "drr_db": 0.0},
}
NUMERIC = {"snr_db", "compression_level", "rt60_s", "drr_db"}


class PerturbationError(ValueError):
    """A `--perturb` spec that cannot be applied (the message names the flag, the spec and what is expected)."""


@dataclass
class Perturbation:
    """One parsed spec: `name` (a key of SPECS), its `params`, and `spec` as the user wrote it."""

    name: str
    params: dict = field(default_factory=dict)
    spec: str = ""

    def apply(self, waveform: np.ndarray, seed: int = 0, utterance: str = "") -> np.ndarray:
        """The perturbed (N,) float32 waveform at 16 kHz (same length). `utterance` names the clip (its seed)."""
        waveform = np.asarray(waveform, dtype=np.float64)
        rng = np.random.default_rng([int(seed), zlib.crc32(self.spec.encode()), zlib.crc32(utterance.encode())])
        if self.name == "noise":
            out = add_noise(waveform, self.params["snr_db"], rng, self.params["color"])
        elif self.name == "telephone":
            out = telephone(waveform, self.params["codec"])
        elif self.name in CODECS:
            out = codec_roundtrip(waveform, self.name, self.params["compression_level"])
        else:
            rir = synthetic_rir(self.params["rt60_s"], self.params["drr_db"], rng)
            out = reverberate(waveform, rir)
        return out.astype(np.float32)


def _error(spec: str, message: str) -> PerturbationError:
    return PerturbationError(f"--perturb {spec}: {message}")


def parse_perturbation(spec: str) -> Perturbation:
    """`NAME[:key=value,...]` → Perturbation, every value checked (PerturbationError names the flag and the spec)."""
    name, _, rest = spec.strip().partition(":")
    if name not in SPECS:
        raise _error(spec, f"unknown perturbation {name!r}; expected one of {sorted(SPECS)}.")
    params = dict(SPECS[name])
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in params:
            raise _error(spec, f"{name} takes {sorted(params)} as key=value, got {item!r}.")
        if key in NUMERIC:
            try:
                number = float(value)
            except ValueError:
                raise _error(spec, f"{key} must be a number, got {value!r}.") from None
            if not math.isfinite(number):
                raise _error(spec, f"{key} must be finite, got {value!r}.")
            params[key] = number
        else:
            params[key] = value.strip()
    _check(spec, name, params)
    return Perturbation(name, params, spec.strip())


def _check(spec: str, name: str, params: dict) -> None:
    if name == "noise":
        if params["snr_db"] is None:
            raise _error(spec, "noise needs snr_db=<dB>, e.g. noise:snr_db=10.")
        if params["color"] not in ("white", "pink"):
            raise _error(spec, f"color must be white or pink, got {params['color']!r}.")
    elif name == "telephone" and params["codec"] not in TELEPHONE_CODECS:
        raise _error(spec, f"codec must be one of {sorted(TELEPHONE_CODECS)}, got {params['codec']!r}.")
    elif name in CODECS and not 0 <= params["compression_level"] <= 1:
        raise _error(spec, f"compression_level must be in [0, 1], got {params['compression_level']}.")
    elif name == "reverb" and not 0.05 <= params["rt60_s"] <= 5:
        raise _error(spec, f"rt60_s must be in [0.05, 5] s, got {params['rt60_s']}.")
    if name in CODECS or name == "telephone":
        import soundfile as sf

        container, subtype = CODECS[name] if name in CODECS else ("WAV", TELEPHONE_CODECS[params["codec"]])
        if container not in sf.available_formats() or subtype not in sf.available_subtypes(container):
            raise _error(
                spec,
                f"this libsndfile ({sf.__libsndfile_version__}) cannot write {container}/{subtype}; install "
                "libsndfile ≥ 1.1 with MPEG and Opus support (soundfile's wheels bundle one).",
            )


def snr_db(clean, noisy) -> float:
    """10·log10(Σ clean² / Σ (noisy − clean)²): the SNR of `noisy` against `clean`, in dB."""
    clean, noisy = np.asarray(clean, dtype=np.float64), np.asarray(noisy, dtype=np.float64)
    return float(10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2)))


def add_noise(waveform: np.ndarray, target_snr_db: float, rng: np.random.Generator, color: str = "white"):
    """`waveform` + Gaussian noise (white or pink) scaled to `target_snr_db` over the clip."""
    noise = rng.standard_normal(len(waveform))
    if color == "pink":
        spectrum = np.fft.rfft(noise)
        frequencies = np.fft.rfftfreq(len(noise))
        spectrum[1:] /= np.sqrt(frequencies[1:] / frequencies[1])  # power ∝ 1/f
        spectrum[0] = 0
        noise = np.fft.irfft(spectrum, n=len(noise))
    signal_power = np.sum(waveform**2)
    if signal_power == 0:
        return waveform.copy()
    scale = np.sqrt(signal_power / (np.sum(noise**2) * 10 ** (target_snr_db / 10)))
    return waveform + scale * noise


def _roundtrip(waveform: np.ndarray, rate: int, container: str, subtype: str, **kwargs) -> np.ndarray:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, waveform.astype(np.float32), rate, format=container, subtype=subtype, **kwargs)
    buffer.seek(0)
    decoded, decoded_rate = sf.read(buffer, dtype="float64")
    if decoded_rate != rate:
        raise RuntimeError(f"{container}/{subtype} decoded at {decoded_rate} Hz, written at {rate} Hz")
    return decoded if decoded.ndim == 1 else decoded.mean(axis=1)


def _fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    return waveform[:length] if len(waveform) >= length else np.pad(waveform, (0, length - len(waveform)))


def telephone(waveform: np.ndarray, codec: str = "ulaw") -> np.ndarray:
    """Band-pass 300–3400 Hz, 8 kHz, μ-law or GSM 06.10, back to 16 kHz (module docstring)."""
    import soxr
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=SAMPLING_RATE, output="sos")
    band = sosfiltfilt(sos, waveform) if len(waveform) > 27 else waveform
    narrow = soxr.resample(band, SAMPLING_RATE, TELEPHONE_RATE, quality="VHQ")
    peak = max(1.0, float(np.abs(narrow).max()))  # the codecs clip at ±1
    coded = _roundtrip(narrow / peak, TELEPHONE_RATE, "WAV", TELEPHONE_CODECS[codec]) * peak
    wide = soxr.resample(coded, TELEPHONE_RATE, SAMPLING_RATE, quality="VHQ")
    return _fit_length(wide, len(waveform))


def codec_roundtrip(waveform: np.ndarray, codec: str, compression_level: float) -> np.ndarray:
    """Encode and decode with libsndfile's MP3 / Vorbis / Opus at `compression_level`; same length out."""
    container, subtype = CODECS[codec]
    peak = max(1.0, float(np.abs(waveform).max()))
    extra = {"bitrate_mode": "CONSTANT"} if codec == "mp3" else {}
    try:
        decoded = _roundtrip(
            waveform / peak, SAMPLING_RATE, container, subtype, compression_level=compression_level, **extra
        )
    except RuntimeError as error:  # soundfile's LibsndfileError
        raise PerturbationError(
            f"--perturb {codec}:compression_level={compression_level}: libsndfile could not encode ({error})."
        ) from error
    return _fit_length(_align(decoded * peak, waveform), len(waveform))


MAX_CODEC_DELAY = 4096  # samples (0.256 s): MP3 at low bitrates decodes with LAME's 1105-sample delay not removed


def _align(decoded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`decoded` without its leading codec delay: the lag in [0, MAX_CODEC_DELAY] of the cross-correlation maximum."""
    from scipy.signal import correlate

    correlation = correlate(decoded, reference, mode="full", method="fft")
    zero = len(reference) - 1
    lag = int(np.argmax(correlation[zero : zero + MAX_CODEC_DELAY + 1]))
    return decoded[lag:]


def encoded_bitrate_kbps(waveform: np.ndarray, codec: str, compression_level: float) -> float:
    """The bitrate libsndfile achieves for `waveform` (file size · 8 / duration), in kbit/s."""
    import soundfile as sf

    container, subtype = CODECS[codec]
    buffer = io.BytesIO()
    extra = {"bitrate_mode": "CONSTANT"} if codec == "mp3" else {}
    sf.write(
        buffer,
        np.asarray(waveform, dtype=np.float32),
        SAMPLING_RATE,
        format=container,
        subtype=subtype,
        compression_level=compression_level,
        **extra,
    )
    return len(buffer.getvalue()) * 8 / (len(waveform) / SAMPLING_RATE) / 1000


def synthetic_rir(rt60_s: float, drr_db: float, rng: np.random.Generator, rate: int = SAMPLING_RATE) -> np.ndarray:
    """Polack's model (module docstring): (L,) impulse response, h[0] = 1 (direct path)."""
    length = int(round(1.2 * rt60_s * rate))
    onset = int(round(0.0025 * rate))
    t = np.arange(length - onset) / rate
    tail = rng.standard_normal(len(t)) * np.exp(-3 * np.log(10) * t / rt60_s)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))  # direct energy 1 / tail energy = 10^(drr/10)
    return np.concatenate([[1.0], np.zeros(onset - 1), tail])


def reverberate(waveform: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """`waveform` convolved with `rir` (FFT), cut to its length, rescaled to its RMS."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(waveform, rir)[: len(waveform)]
    rms_in, rms_out = np.sqrt(np.mean(waveform**2)), np.sqrt(np.mean(wet**2))
    return wet * (rms_in / rms_out) if rms_out > 0 else wet


def decay_rt60_s(rir: np.ndarray, rate: int = SAMPLING_RATE) -> float:
    """RT60 measured on an impulse response: Schroeder's backward-integrated energy decay curve, the −5 to −25 dB
    range fitted by least squares (T20), extrapolated to 60 dB (ISO 3382)."""
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    curve = 10 * np.log10(energy / energy[0])
    t = np.arange(len(rir)) / rate
    fit = (curve <= -5) & (curve >= -25)
    slope = np.polyfit(t[fit], curve[fit], 1)[0]
    return float(-60 / slope)


__all__ = [
    "CODECS",
    "Perturbation",
    "PerturbationError",
    "SPECS",
    "add_noise",
    "codec_roundtrip",
    "decay_rt60_s",
    "encoded_bitrate_kbps",
    "parse_perturbation",
    "reverberate",
    "snr_db",
    "synthetic_rir",
    "telephone",
]
