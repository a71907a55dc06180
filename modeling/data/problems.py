"""Problems found before anything runs, and the one error that reports them: `CheckError`.

Every entry point (train.py, score.py, predict.py, the timeline, the examples) checks everything first and raises
one `CheckError` listing every problem, grouped by cause: a label list that 301 files do not match is one line
with its count and a few examples, not 301 lines. Code reads a problem's fields (`key`, `cause`, `blocking`),
never its message text.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field


EXAMPLES_PER_GROUP = 3
# The one exit-code rule of the batch entry points (predict.py, the timeline), shown in their --help.
BATCH_EXIT_CODES = (
    "Exit status: 0 when every input was done;\n"
    "             2 when the checks refused (every problem listed, nothing written)\n"
    "               or when some inputs failed (each listed with the reason, the others done)."
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input.

    Attributes:
        key: what it is about: a dotted config key ("stage2.warmup_ratio"), a file, "fold3", ...
        message: the full sentence (names the key or file, the value, and what is expected).
        value: the offending value, if any.
        blocking: False for a warning that does not stop the run.
        cause: problems with the same cause form one group in the report (e.g. "unknown label 'x'"); None: its own.
        related: the other config keys a rule tying options together involves (`key` is the first); a problem is
            "from --set" when any of them was set on the command line.
    """

    key: str
    message: str
    value: object = field(default=None, compare=False)
    blocking: bool = True
    cause: str | None = None
    related: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return self.message


def as_problem(item) -> Problem:
    """A `Problem` as is; a string as a problem with that message."""
    return item if isinstance(item, Problem) else Problem(key="", message=str(item))


def grouped(problems: Iterable[Problem]) -> list[tuple[str | None, list[Problem]]]:
    """[(cause, problems)] in order of first appearance; a problem without a cause is a group of its own."""
    groups: dict = {}
    for index, problem in enumerate(problems):
        groups.setdefault(problem.cause if problem.cause is not None else ("single", index), []).append(problem)
    return [(cause if isinstance(cause, str) else None, members) for cause, members in groups.items()]


def report(problems: Iterable[Problem], source: str = "", hint: str = "", outcome: str = "nothing trained") -> str:
    """The grouped listing: "N problem(s) in SOURCE (OUTCOME):" then one entry per cause (`outcome`: what the
    problems stopped, e.g. "nothing written"; "" for warnings that stop nothing)."""
    groups = grouped(problems)
    where = (f"in {source}" + (f" ({outcome})" if outcome else "")) if source else "found before training"
    lines = [f"{len(groups)} problem(s) {where}:"]
    for cause, members in groups:
        if len(members) == 1:
            lines.append(f"  - {members[0].message}")
            continue
        lines.append(f"  - {cause} ({len(members)} times), e.g.:")
        lines += [f"      {problem.message}" for problem in members[:EXAMPLES_PER_GROUP]]
        if len(members) > EXAMPLES_PER_GROUP:
            lines.append(f"      … and {len(members) - EXAMPLES_PER_GROUP} more")
    return "\n".join(lines + ([hint] if hint else []))


class CheckError(ValueError):
    """Everything wrong with the input, found before anything was written or trained (the one error class of the
    checks: bad config keys and values, corpus rows, folds, model settings).

    Args:
        problems: `Problem`s (or message strings); a single string is one problem.
        source: what was checked (a config file), named in the first line.
        hint: a line after the listing (e.g. "Pass --skip-bad-audio ...").
        outcome: what the problems stopped, in the first line ("nothing trained"; score.py, predict.py and the
            timeline: "nothing written").
    Attributes:
        problems: the `Problem`s; `blocking_problems` those that stop the run.
    """

    def __init__(self, problems: Iterable | str, source: str = "", hint: str = "", outcome: str = "nothing trained"):
        items = [problems] if isinstance(problems, str) else list(problems)
        self.problems = [as_problem(item) for item in items]
        self.source, self.hint = source, hint
        if len(self.problems) == 1 and not source and not hint and isinstance(problems, str):
            super().__init__(self.problems[0].message)
        else:
            super().__init__(report(self.problems, source, hint, outcome))

    @property
    def blocking_problems(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.blocking]


__all__ = ["BATCH_EXIT_CODES", "CheckError", "Problem", "as_problem", "grouped", "report"]
