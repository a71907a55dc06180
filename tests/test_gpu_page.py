"""docs/gpu.md's commands as written: the GPU benchmark (which says "not run" without CUDA), train.py's torchrun
command line (arguments and config overrides accepted); the dry run is run by `test_benchmarks.py`."""

import shlex

import torch
from helpers import REPO, markdown_blocks


PAGE = REPO / "docs" / "gpu.md"


def page_commands() -> list[list[str]]:
    return [shlex.split(block) for block in markdown_blocks(PAGE, "bash")]


def page_command(flag: str) -> list[str]:
    (command,) = [argv for argv in page_commands() if flag in argv]
    return command


def test_the_gpu_benchmark_command_runs_and_says_not_run_without_cuda(tmp_path, monkeypatch):
    from benchmarks import gpu

    (argv,) = [argv for argv in page_commands() if "benchmarks.gpu" in argv and "--dry-run" not in argv]
    assert argv[:3] == ["python", "-m", "benchmarks.gpu"]
    monkeypatch.chdir(tmp_path)
    if not torch.cuda.is_available():
        assert gpu.main(argv[3:]) == 0
        assert '"status": "not run: no accelerator lent to this task"' in (tmp_path / argv[-1]).read_text()


def test_the_torchrun_command_line_is_train_pys(tmp_path):
    from modeling.cli.train import parse_args
    from modeling.training.run_config import resolve_config_problems

    (argv,) = [argv for argv in page_commands() if argv[0] == "torchrun"]
    script = argv.index("train.py")
    assert argv[1:script] == ["--standalone", "--nproc_per_node", "4"]
    args = parse_args(argv[script + 1 :])
    assert args.overrides == ["training.bf16=true", "training.ddp_timeout=7200"]
    _, problems, _ = resolve_config_problems(REPO / args.config, args.overrides, str(tmp_path), None, None)
    assert not [problem for problem in problems if "bf16" in problem or "ddp_timeout" in problem], problems
