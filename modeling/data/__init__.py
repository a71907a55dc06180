"""Corpora on disk → `datasets.Dataset` (audio path/bytes, label, speaker, gender, session, duration), folds, and
the dataset checks that list every problem before training. Needs no torch."""

from .corpora import (
    CorpusError,
    load_audio_folder,
    load_corpus,
    load_crema_d,
    load_hub_dataset,
    load_iemocap,
    load_ravdess,
    select_speakers,
)


__all__ = [
    "CorpusError",
    "load_audio_folder",
    "load_corpus",
    "load_crema_d",
    "load_hub_dataset",
    "load_iemocap",
    "load_ravdess",
    "select_speakers",
]
