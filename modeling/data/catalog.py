"""The corpora and loaders the project knows: `load_corpus` (a config's `data.loader`) and `corpus_info` (the
facts of the corpus a config reads, for the model cards).
"""

import inspect
import os
import re
from dataclasses import replace
from pathlib import Path

from datasets import Dataset

from .audio_folder import load_audio_folder
from .corpus import CorpusError, CorpusInfo
from .crema_d import CREMA_D, load_crema_d
from .emobox import load_emobox
from .emodb import EMODB, load_emodb
from .hub import load_hub_dataset
from .iemocap import IEMOCAP, load_iemocap
from .msp_podcast import MSP_PODCAST, load_msp_podcast
from .nemo4 import NEMO4
from .polish3 import POLISH3
from .ravdess import RAVDESS, load_ravdess


CORPORA: dict[str, CorpusInfo] = {
    info.name: info for info in (IEMOCAP, CREMA_D, RAVDESS, EMODB, MSP_PODCAST, POLISH3, NEMO4)
}
LOADERS = {
    "iemocap": load_iemocap,
    "crema_d": load_crema_d,
    "ravdess": load_ravdess,
    "emodb": load_emodb,
    "msp_podcast": load_msp_podcast,
    "audio_folder": load_audio_folder,
    "emobox": load_emobox,
    "hub": load_hub_dataset,
}


def load_corpus(loader: str, root: str | Path, **kwargs) -> Dataset:
    """Dispatch on the loader name of a config (`data.loader`): iemocap, crema_d, ravdess, emodb, msp_podcast,
    audio_folder, hub."""
    if loader not in LOADERS:
        raise CorpusError(f"data.loader must be one of {sorted(LOADERS)}, got {loader!r}.")
    accepted = list(inspect.signature(LOADERS[loader]).parameters)[1:]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown and loader != "hub":  # the Hub loader passes extra arguments on to `datasets.load_dataset`
        raise CorpusError(
            f"data.loader_args: unknown argument(s) {unknown} for loader {loader!r}; expected {accepted}."
        )
    return LOADERS[loader](root, **kwargs)


def accepts_distribution(loader: str) -> bool:
    """Whether the loader can add a `label_distribution` column (it takes `label_distribution=True`)."""
    return loader in LOADERS and "label_distribution" in inspect.signature(LOADERS[loader]).parameters


def _key(name: str) -> str:
    """`CREMA-D`, `crema_d` → `cremad`: names compare lowercase, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY = {_key(info.name): info for info in CORPORA.values()}


def corpus_info(loader: str | None, root: str | os.PathLike | None = None) -> CorpusInfo | None:
    """The facts of the corpus that a config's `data.loader` and `data.root` read; None for one the project
    does not know.

    A corpus with its own loader (an entry of `CORPORA` whose `loader` is its name) is found by the loader's name;
    any other by the last part of `root`: the corpus folder for `audio_folder` (`data/polish3` → polish3,
    `../shared/data/nemo4` → nemo4), the dataset id for `hub` (`user/polish3` → polish3, with `hub_id` set to that
    id). Names compare lowercase, letters and digits only (`data/CREMA-D` → crema_d).
    """
    dedicated = loader in CORPORA and CORPORA[loader].loader == loader
    name = (loader or "") if dedicated or not root else Path(str(root).rstrip("/")).name
    info = _BY_KEY.get(_key(name))
    if info is not None and loader == "hub":
        info = replace(info, hub_id=str(root))
    return info


__all__ = ["CORPORA", "LOADERS", "accepts_distribution", "corpus_info", "load_corpus"]
