"""Transitional: the loaders moved to one module per corpus (see `modeling.data`). Import from `modeling.data`;
this module goes once `modeling.training.experiment` does."""

from .catalog import load_corpus
from .corpus import CorpusError, select_speakers


__all__ = ["CorpusError", "load_corpus", "select_speakers"]
