"""Corpora on disk → `datasets.Dataset` (audio path/bytes, label, speaker, gender, session, duration_s), folds, and
the dataset checks that list every problem before training. Needs no torch.

One module per corpus with its facts (`CorpusInfo`: labels, license, citation, language, default folds) and, where
it has one, its loader: `iemocap`, `crema_d`, `ravdess`, `emodb`,
`msp_podcast`, `polish3`, `nemo4`; the generic loaders `audio_folder` and
`hub`; `corpus` (what they share), `catalog` (`load_corpus`, `corpus_info`), `folds`, `checks`.
"""

from .audio_folder import load_audio_folder
from .catalog import CORPORA, corpus_info, load_corpus
from .corpus import CorpusError, CorpusInfo, select_speakers
from .crema_d import load_crema_d
from .emodb import load_emodb
from .hub import load_hub_dataset
from .iemocap import load_iemocap
from .msp_podcast import load_msp_podcast
from .ravdess import load_ravdess


__all__ = [
    "CORPORA",
    "CorpusError",
    "CorpusInfo",
    "corpus_info",
    "load_audio_folder",
    "load_corpus",
    "load_crema_d",
    "load_emodb",
    "load_hub_dataset",
    "load_iemocap",
    "load_msp_podcast",
    "load_ravdess",
    "select_speakers",
]
