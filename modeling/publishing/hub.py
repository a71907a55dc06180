"""Publish the folds of a finished cross-validation run to the Hugging Face Hub.

`push_run` turns a run directory written by `train.py` into Hub repositories: by default one repository per fold
(`ORG/NAME-fold<k>`), or with `revision_per_fold=True` one repository `ORG/NAME` with a branch `fold<k>` per fold
and, on `main`, an overview card plus a copy of one fold's checkpoint (`main_fold`: the fold with the best
validation UA unless asked), so that `from_pretrained("ORG/NAME")` and `pipeline(model="ORG/NAME")` load without a
`revision` (the copy costs no storage: the Hub stores an LFS blob once). Each fold gets its stage-2 checkpoint
(safetensors weights, `config.json` with `auto_map`, the remote-code files, `preprocessor_config.json`), a model card
rendered from `model_cards/`, the confusion matrix image(s) and the run's `results.json`.

Everything that can be checked locally (the token, the run directory, the folds, the checkpoints, the repo id, every
metric the cards report, no local absolute path in any file) is checked before the first request. Pushes are
idempotent: the remote tree is compared with the local files (git sha1 for regular files, sha256 for LFS files) and
only new or changed files are committed; LFS blobs the server already holds are not re-sent, so a push interrupted
half way completes on the next run.

Each repository gets one commit (atomic: its files and its model card appear together, or nothing), the card as the
commit's last file; with `revision_per_fold` the overview card of `main` is committed last, after every fold branch
it describes. Transient failures (HTTP 408/429/5xx, dropped connections, timeouts) are retried with exponential
backoff: by huggingface_hub itself for each LFS and commit request (`http_backoff`), and here for a repository's
whole push (create, list, commit; safe because a push is idempotent). A push that still fails raises `PushError`
naming the fold and the files not yet on the Hub; running the same command again completes it.

The run directory is read by `modeling.publishing.run`, the cards rendered by `modeling.publishing.model_card`,
the remote code computed by `modeling.publishing.remote_code`. Nothing here imports torch.
"""

import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, RepoFile, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id
from huggingface_hub.utils.sha import git_hash

from ..rundir.integrity import sha256_of
from ..rundir.reader import RunReadError, fold_name, fold_number
from .model_card import FOLD_IMAGE, render_fold_card, render_overview_card
from .public import find_local_paths, local_paths, missing_metrics, public_results
from .remote_code import hub_pipeline_files
from .run import FinishedFold, PushError, Run, load_run
from .space import check_space_id, space_files


logger = logging.getLogger(__name__)


# Transient failures worth retrying (huggingface_hub's `http_backoff` retries the same).
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
RETRY_EXCEPTIONS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)

# Files of a checkpoint folder that belong on the Hub (trainer state, optimizer and RNG files stay local).
CHECKPOINT_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "*.py",
)
# Exports written next to the checkpoint (`modeling.inference.onnx_export`), uploaded under the same relative path.
CHECKPOINT_EXTRA_PATTERNS = ("onnx/*.onnx", "onnx/backend.json")  # backend.json: the measured CPU backend choice


# ----------------------------------------------------------------------------------------------------------------
# Token and repo ids
# ----------------------------------------------------------------------------------------------------------------
def resolve_token(token: str | None = None) -> str:
    """The token to push with: `token`, else `HF_TOKEN`, else the one stored by `hf auth login`."""
    token = token or get_token()
    if not token:
        raise PushError(
            "No Hugging Face token found: set HF_TOKEN or log in with `hf auth login` (`huggingface-cli login`) "
            "with a token that can write to the target organisation."
        )
    return token


def fold_repo_id(repo_id: str, fold: str) -> str:
    return f"{repo_id}-{fold_name(fold)}"


def check_repo_id(repo_id: str, run: Run, revision_per_fold: bool) -> None:
    if repo_id.count("/") != 1:
        raise PushError(f"--repo-id {repo_id!r} must be ORG/NAME (a user or organisation, then the model name).")
    targets = [repo_id] if revision_per_fold else [fold_repo_id(repo_id, f) for f in run.folds]
    for target in targets:
        try:
            validate_repo_id(target)
        except HFValidationError as error:
            raise PushError(f"--repo-id {repo_id!r} gives the invalid repository name {target!r}: {error}") from error
        if len(target.split("/")[1]) > 96:
            raise PushError(f"--repo-id {repo_id!r} gives {target!r}, longer than the Hub's 96 characters.")


# ----------------------------------------------------------------------------------------------------------------
# What goes where
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class PushTarget:
    """One commit: `files` (path in repo → local path or bytes) to `repo_id` at branch `revision`."""

    repo_id: str
    revision: str
    files: dict[str, Path | bytes]
    description: str
    pending: list[str] | None = None  # the files found missing or changed on the Hub, once compared
    repo_type: str = "model"  # "space" for the demo Space (`space.py`)


@dataclass
class PushResult:
    repo_id: str
    revision: str
    uploaded: list[str]
    unchanged: list[str]
    commit_url: str | None = None

    @property
    def url(self) -> str:
        return self.repo_id if self.revision == "main" else f"{self.repo_id}@{self.revision}"


def _checkpoint_files(checkpoint: Path) -> dict[str, Path]:
    files = {}
    for pattern in CHECKPOINT_PATTERNS:
        for path in sorted(checkpoint.glob(pattern)):
            if path.is_file():
                files[path.name] = path
    for pattern in CHECKPOINT_EXTRA_PATTERNS:
        for path in sorted(checkpoint.glob(pattern)):
            if path.is_file():
                files[path.relative_to(checkpoint).as_posix()] = path
    return files


def _run_files(run: Run) -> dict[str, Path | bytes]:
    """The run's results.json (as published: `public.public_results`) and figures, under their own names."""
    layout = run.layout
    files = {path.name: path for path in (layout.confusion_matrix, layout.tsne) if path.is_file()}
    return {layout.results_json.name: public_results(run), **files}


def fold_files(run: Run, fold: FinishedFold, card: str) -> dict[str, Path | bytes]:
    files: dict[str, Path | bytes] = {**_checkpoint_files(fold.checkpoint), **_run_files(run)}
    # the core's code, and config.json with `custom_pipelines`: from_pretrained and pipeline(model=REPO) work from the
    # Hub
    files.update(hub_pipeline_files(fold.checkpoint))
    if fold.confusion_matrix_image:
        files[FOLD_IMAGE] = fold.confusion_matrix_image
    if fold.split is not None:
        split = run.layout.split(fold.name)
        files[split.name] = split
    files["README.md"] = card.encode()
    return files


def main_fold(run: Run, requested=None) -> FinishedFold:
    """The fold whose checkpoint `main` holds with `revision_per_fold`: `requested` (`2` or `"fold2"`), else the
    fold with the best validation UA — checkpoint selection's own criterion, never the test score —, the lowest
    fold number on a tie.

    Raises:
        PushError: `requested` is not one of the folds being published (the message lists them).
    """
    if requested is not None:
        try:
            name = str(fold_number(requested))
        except RunReadError as error:
            raise PushError(f"--main-fold: {error}") from error
        if name not in run.folds:
            published = ", ".join(fold_name(k) for k in run.folds)
            raise PushError(
                f"--main-fold {requested!r}: {fold_name(name)} is not published here (folds: {published})."
            )
        return run.folds[name]
    return run.best_validation_fold


def plan_push(
    run: Run,
    repo_id: str,
    *,
    revision_per_fold: bool = False,
    license: str | None = None,
    space: str | None = None,
    main_fold_name=None,
) -> list[PushTarget]:
    """The commits a push makes, in order (the overview of `main` last with `revision_per_fold`, holding the
    checkpoint of `main_fold(run, main_fold_name)`; the demo Space `space` after every fold it loads; each card then
    links to it).

    Raises `PushError` for a fold whose results lack a metric its card reports, for `main_fold_name` without
    `revision_per_fold` or naming a fold not published, and for any file that contains a local absolute path
    (`public.find_local_paths`): nothing is uploaded.
    """
    if main_fold_name is not None and not revision_per_fold:
        raise PushError("--main-fold picks the fold that the main branch holds: it needs --revision-per-fold.")
    missing = [
        f"{fold_name(name)}: {', '.join(gaps)}" for name, fold in run.folds.items() if (gaps := missing_metrics(fold))
    ]
    if missing:
        raise PushError(
            f"{run.layout.results_json} lacks metrics the model cards report ({'; '.join(missing)}); the Hub rejects "
            "a model-index without values. Re-score the run (run train.py again with the same config) first."
        )
    targets = []
    for name, fold in run.folds.items():
        target_repo = repo_id if revision_per_fold else fold_repo_id(repo_id, name)
        revision = fold.label if revision_per_fold else None
        card = render_fold_card(run, fold, target_repo, revision, license, space=space)
        targets.append(PushTarget(target_repo, revision or "main", fold_files(run, fold, card), fold_name(name)))
    if revision_per_fold:
        default = main_fold(run, main_fold_name)
        overview = render_overview_card(run, repo_id, license, space=space, main_fold=default)
        files = {**fold_files(run, default, overview), **_run_files(run), "README.md": overview.encode()}
        description = f"overview of {len(run.folds)} fold branch(es) + {default.label}'s checkpoint"
        targets.append(PushTarget(repo_id, "main", files, description))
    if space:
        check_space_id(space)
        refs = [f"{t.repo_id}@{t.revision}" if t.revision != "main" else t.repo_id for t in targets[: len(run.folds)]]
        files = space_files(run, refs, space)  # the Space holds code (Apache-2.0), not the models
        targets.append(PushTarget(space, "main", files, f"demo Space of {len(refs)} fold(s)", repo_type="space"))
    paths = local_paths(run)
    leaks = [f"{t.repo_id}@{t.revision}/{leak}" for t in targets for leak in find_local_paths(t.files, paths)]
    if leaks:
        raise PushError(
            "Refusing to publish local paths (they name this machine's folders and user): " + "; ".join(leaks)
        )
    return targets


# ----------------------------------------------------------------------------------------------------------------
# Uploading
# ----------------------------------------------------------------------------------------------------------------
def _read(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _sha256(source: Path | bytes) -> str:
    """SHA-256 of bytes, or of a file (`rundir.integrity.sha256_of`, the one file hasher)."""
    return hashlib.sha256(source).hexdigest() if isinstance(source, bytes) else sha256_of(source)


def remote_files(api: HfApi, repo_id: str, revision: str, repo_type: str = "model") -> dict:
    """{path: RepoFile} at `revision`; empty when the repository or the branch does not exist yet."""
    try:
        entries = api.list_repo_tree(repo_id, revision=revision, recursive=True, repo_type=repo_type)
        return {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return {}


def is_unchanged(source: Path | bytes, remote) -> bool:
    """Same content as the remote file: sha256 for LFS files, git blob sha1 for regular ones."""
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == _sha256(source)
    return remote.blob_id == git_hash(_read(source))


def push_target(
    api: HfApi, target: PushTarget, *, private: bool = False, commit_message: str | None = None
) -> PushResult:
    """Create the repository/branch if needed and commit the files of `target` that differ from the remote ones."""
    kind = target.repo_type
    space_sdk = {"space_sdk": "gradio"} if kind == "space" else {}
    api.create_repo(target.repo_id, private=private, exist_ok=True, repo_type=kind, **space_sdk)
    if target.revision != "main":
        api.create_branch(target.repo_id, branch=target.revision, exist_ok=True, repo_type=kind)
    remote = remote_files(api, target.repo_id, target.revision, repo_type=kind)
    changed = [path for path, source in target.files.items() if not is_unchanged(source, remote.get(path))]
    target.pending = changed
    unchanged = [path for path in target.files if path not in changed]
    if not changed:
        logger.info(f"{target.repo_id}@{target.revision}: up to date, nothing to upload.")
        return PushResult(target.repo_id, target.revision, [], unchanged)
    logger.info(
        f"{target.repo_id}@{target.revision}: committing {len(changed)} changed file(s), {len(unchanged)} unchanged."
    )
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source) if isinstance(source, Path) else source)
        for path, source in sorted(target.files.items(), key=lambda item: item[0] == "README.md")  # the card last
        if path in changed
    ]
    info = api.create_commit(
        target.repo_id,
        operations,
        commit_message=commit_message or f"Upload {target.description}",
        commit_description="Changed files: " + ", ".join(changed),
        revision=target.revision,
        repo_type=kind,
    )
    return PushResult(target.repo_id, target.revision, changed, unchanged, info.commit_url)


def push_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    folds=None,
    *,
    private: bool = False,
    revision_per_fold: bool = False,
    dry_run: bool = False,
    license: str | None = None,
    space: str | None = None,
    main_fold: str | int | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    api: HfApi | None = None,
    retry: dict | None = None,
) -> list[PushTarget] | list[PushResult]:
    """Publish the folds of a finished run (see the module docstring).

    Args:
        run_dir: the run directory of `train.py`.
        repo_id: `ORG/NAME`; folds go to `ORG/NAME-fold<k>`, or to branches `fold<k>` of `ORG/NAME` with
            `revision_per_fold`.
        folds: fold names (`1` or `"fold1"`); default all.
        private: create the repositories private (existing repositories keep their visibility).
        dry_run: check everything and return the planned commits without a token or any request.
        license: the card's license; default the training corpus's.
        space: `ORG/NAME` of a demo Space (Gradio) to publish after the folds, loading them by id
            (`publishing/space.py`); each model card links to it.
        main_fold: with `revision_per_fold`, the fold whose checkpoint `main` also holds (default: `main_fold`'s
            rule, the best validation UA).
        token, endpoint, api: Hub access (default: `resolve_token()` and `HF_ENDPOINT`).
        retry: keyword arguments of `push_with_retries` (attempts, base_wait_s, max_wait_s).
    Returns:
        The planned `PushTarget`s with `dry_run`, else one `PushResult` per commit target.
    Raises:
        PushError: before any request, for a missing token, run directory, `results.json`, fold, checkpoint file,
            metric, an invalid repo id or a file containing a local path; after the retries, naming the fold and
            the files not yet on the Hub.
    """
    run = load_run(run_dir, folds)
    check_repo_id(repo_id, run, revision_per_fold)
    targets = plan_push(
        run, repo_id, revision_per_fold=revision_per_fold, license=license, space=space, main_fold_name=main_fold
    )
    if dry_run:
        return targets
    token = resolve_token(token or (api.token if api is not None else None))
    api = api or HfApi(endpoint=endpoint, token=token)
    return [push_with_retries(api, target, private=private, **(retry or {})) for target in targets]


def is_transient(error: BaseException) -> bool:
    """A failure worth retrying: HTTP 408/429/5xx, a dropped connection, a timeout."""
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code in RETRY_STATUS_CODES
    return isinstance(error, RETRY_EXCEPTIONS)


def push_with_retries(
    api: HfApi,
    target: PushTarget,
    *,
    private: bool = False,
    attempts: int = 4,
    base_wait_s: float = 1.0,
    max_wait_s: float = 8.0,
) -> PushResult:
    """`push_target`, retried up to `attempts` times on transient failures (waits base_wait_s · 2^k, capped).

    Raises:
        PushError: it still failed (or failed otherwise); names the target and the files not yet on the Hub.
    """
    for attempt in range(1, attempts + 1):
        try:
            return push_target(api, target, private=private)
        except Exception as error:
            if attempt < attempts and is_transient(error):
                wait = min(base_wait_s * 2 ** (attempt - 1), max_wait_s)
                logger.warning(
                    f"{target.description} → {target.repo_id}@{target.revision}: {error!r}; retry "
                    f"{attempt}/{attempts - 1} in {wait:.1f} s."
                )
                time.sleep(wait)
                continue
            raise PushError(_failure_report(target, error, attempt)) from error


def _failure_report(target: PushTarget, error: Exception, attempts: int) -> str:
    pending = target.pending if target.pending is not None else list(target.files)  # not compared yet: all
    return (
        f"Pushing {target.description} to {target.repo_id}@{target.revision} failed after {attempts} attempt(s): "
        f"{str(error).rstrip('.')}. Not on the Hub yet: {', '.join(pending) or 'nothing'} (a commit is atomic: "
        "the model card was not published without its files). Run the same command again to complete the push."
    )


def describe_plan(targets: list[PushTarget]) -> str:
    """Human-readable plan of a dry run."""
    out = io.StringIO()
    for target in targets:
        out.write(f"{target.repo_id} @ {target.revision} ({target.description}):\n")
        for path, source in target.files.items():
            size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
            origin = "rendered" if isinstance(source, bytes) else str(source)
            out.write(f"  {path:<32} {size:>12,} B  {origin}\n")
    return out.getvalue()


__all__ = [
    "PushResult",
    "PushTarget",
    "describe_plan",
    "main_fold",
    "is_transient",
    "plan_push",
    "push_run",
    "push_with_retries",
    "resolve_token",
]
