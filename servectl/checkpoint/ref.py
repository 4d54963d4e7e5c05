"""What a MODEL argument names when it is not a catalog recipe: a local checkpoint directory or a hub repo.

Read the way vLLM reads its model argument: an existing directory is a local checkpoint (even when it looks
like `org/name`), anything else of the form `org/name` is a Hugging Face repo id, optionally `@revision`
(a branch, tag or commit; `servectl` passes it on as vLLM's --revision).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from servectl.errors import UserError

# huggingface_hub's validate_repo_id: namespace/name, letters, digits, '-', '_', '.', at most 96 each,
# no '--' or '..', not starting or ending with '-' or '.'.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"^(?P<org>{_PART})/(?P<name>{_PART})$")
# branches and tags may hold '/' (refs/pr/1); nothing that could step out of a URL path or a cache folder
REVISION = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
# recipe names: the catalog's DOTTED_KEY
_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True)
class ModelRef:
    """A checkpoint named on the command line."""

    kind: str  # "repo" or "path"
    text: str  # as given
    repo: str | None = None  # org/name (kind repo)
    revision: str | None = None  # @revision (kind repo)
    path: Path | None = None  # resolved directory (kind path)

    @property
    def checkpoint_name(self) -> str:
        """The checkpoint's own name: the repo's name part, or the directory's name."""
        return self.repo.split("/", 1)[1] if self.repo else self.path.name  # type: ignore[union-attr]

    @property
    def label(self) -> str:
        if self.repo:
            return self.repo + (f"@{self.revision}" if self.revision else "")
        return str(self.path)


def _exists(text: str, directory: bool = False) -> bool:
    """Whether the path exists (is a directory); a name the OS cannot look up (too long, say) does not."""
    try:
        return Path(text).is_dir() if directory else Path(text).exists()
    except (OSError, ValueError):
        return False


def looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..") or os.sep in text and _exists(text)


def parse(text: str) -> ModelRef | None:
    """The checkpoint `text` names, or None when it is neither an existing directory nor a repo id."""
    if not text or "\x00" in text:
        return None
    if looks_like_path(text) or _exists(text, directory=True):
        path = Path(text).expanduser()
        if not _exists(str(path), directory=True):
            raise UserError(
                f"{text}: no such directory", "give a checkpoint directory (with config.json) or a hub repo id org/name"
            )
        return ModelRef("path", text, path=path.resolve())
    repo, _, revision = text.partition("@")
    if not REPO_ID.match(repo) or "--" in repo or ".." in repo:
        return None
    if _ and not REVISION.match(revision):
        raise UserError(
            f"{text}: {revision!r} is not a revision (a branch, tag or commit)", "e.g. org/name@main or org/name@<commit sha>"
        )
    return ModelRef("repo", text, repo=repo, revision=revision or None)


def recipe_name(ref: ModelRef) -> str:
    """A stable catalog-style name for the recipe derived from `ref`: the checkpoint's name, lower case, with
    every run of other characters turned into '-' (Qwen/Qwen3-8B -> qwen3-8b; ./My_Llama -> my-llama)."""
    name = _NAME_CHARS.sub("-", ref.checkpoint_name.lower()).strip("-.")
    return name or "model"
