"""A frozen-prefix cache on disk is an index (index.json) plus one file of rows (hidden_states.bin). The index was read
at load but the file opened at the first row: a folder rebuilt in between (a resumed run whose cache was stale) fed
the old object the NEW file's rows through the OLD index — wrong hidden states, no error. The file is now mapped at
load (the atomic replacement keeps the old file alive for that map), and a copy that re-opens it (a DataLoader
worker) refuses a replaced file."""

import pickle

import pytest
import torch

from modeling.prefix_cache.cache import FrozenPrefixCache


def cache_of(rows: list[torch.Tensor]) -> FrozenPrefixCache:
    lengths = [len(row) for row in rows]
    return FrozenPrefixCache(
        hidden_size=rows[0].shape[1],
        dtype=torch.float32,
        offsets=[sum(lengths[:i]) for i in range(len(rows))],
        row_lengths=lengths,
        num_frames=lengths,
        labels=list(range(len(rows))),
        batches=None,
        rows=rows,
    )


def test_a_loaded_cache_keeps_its_rows_when_the_folder_is_rebuilt(tmp_path):
    old = [torch.full((3, 4), 1.0), torch.full((2, 4), 2.0)]
    new = [torch.full((1, 4), 7.0), torch.full((4, 4), 8.0)]  # other row lengths: the old index misreads them
    cache_of(old).save(tmp_path / "cache")
    loaded = FrozenPrefixCache.load(tmp_path / "cache")
    worker_copy = pickle.loads(pickle.dumps(loaded))  # what a DataLoader worker receives: no open map
    cache_of(new).save(tmp_path / "cache")  # rebuilt in place (atomic directory replacement)

    for index, row in enumerate(old):
        torch.testing.assert_close(loaded[index]["hidden_states"], row, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=r"cache/hidden_states.bin: the frozen-prefix cache was rebuilt after it"):
        worker_copy[0]
    reloaded = FrozenPrefixCache.load(tmp_path / "cache")
    torch.testing.assert_close(reloaded[1]["hidden_states"], new[1], rtol=0, atol=0)


def test_an_empty_cache_loads(tmp_path):
    empty = FrozenPrefixCache(
        hidden_size=4, dtype=torch.float32, offsets=[], row_lengths=[], num_frames=[], labels=[], batches=None, rows=[]
    )
    empty.save(tmp_path / "empty")
    assert len(FrozenPrefixCache.load(tmp_path / "empty")) == 0
