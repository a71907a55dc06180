"""Two (or more) gloo ranks forked from the test process: `run_ranks(function, ...)`.

Forked, not launched by torchrun: the children share the test process's imports (torch, transformers, modeling:
~8 CPU-s per process otherwise), so a two-rank check costs what its own work costs. Each child gets torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), a fresh accelerate state and one thread; it runs
`function(rank, out_dir)` and writes what it returns (JSON) or its traceback.
"""

import json
import multiprocessing
import os
import socket
import traceback
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(function, rank: int, world_size: int, port: int, out_dir: Path):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
    )
    code = 1
    try:
        import torch
        from accelerate.state import AcceleratorState, PartialState

        torch.set_num_threads(1)
        AcceleratorState._reset_state(reset_partial_state=True)  # the test process's own (single-process) state
        PartialState._reset_state()
        result = function(rank, out_dir)
        (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
        code = 0
    except BaseException:
        (out_dir / f"rank{rank}.error").write_text(traceback.format_exc())
    finally:
        os._exit(code)  # no pytest/atexit teardown in the child


def run_ranks(function, out_dir: Path, world_size: int = 2, timeout_s: float = 120) -> list[dict]:
    """Run `function(rank, out_dir)` in `world_size` forked gloo ranks; their results, by rank.

    Raises `AssertionError` with every failing rank's traceback (or naming the ranks still running after
    `timeout_s`, which are killed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("fork")
    port = free_port()
    processes = [
        context.Process(target=_child, args=(function, rank, world_size, port, out_dir)) for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout_s)
    hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
    for rank in hung:
        processes[rank].kill()
        processes[rank].join()
    errors = {
        rank: (out_dir / f"rank{rank}.error").read_text()
        for rank in range(world_size)
        if (out_dir / f"rank{rank}.error").exists()
    }
    assert not hung, f"ranks {hung} still running after {timeout_s} s; errors: {errors}"
    assert not errors, "\n".join(f"rank {rank}:\n{text}" for rank, text in errors.items())
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(world_size)]
