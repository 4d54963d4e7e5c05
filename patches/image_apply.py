"""Apply or verify servectl's known patches inside a container image, with the image's python3 only.

servectl renders this file, with the patch data appended as `main(PATCHES, MODE)`, into the
RUN steps of docker/Dockerfile.patched (`servectl render --format dockerfile`). It mirrors
servectl.vllmenv.patches for one-shot use at build time: exact anchors (the fix text already present:
nothing to do; the bug text exactly once: replace it; anything else: fail the build; several edits may
share a file, and an edit's own `versions` narrows it to the releases carrying its text), atomic
rewrite keeping permissions, then each patch's verification snippet in the same interpreter.
Stdlib only; the package is located with importlib.util.find_spec, which does not import it.
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile


def _version(names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _affected(version, spec):
    """True/False from the PEP 440 range when `packaging` is importable (vLLM depends on it), else None."""
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        return None
    return SpecifierSet(spec).contains(version, prereleases=True)


def _write(path, text):
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".servectl-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _root(package):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _state(text, f):
    """servectl.vllmenv.patches.edit_state: "bug", "fixed" or "unknown"."""
    if f["before"] in f["after"]:
        if text.count(f["after"]) == 1:
            return "fixed"
        return "bug" if text.count(f["before"]) == 1 else "unknown"
    if text.count(f["before"]) == 1:
        return "bug"
    if f["before"] not in text and f["after"] in text:
        return "fixed"
    return "unknown"


def apply(patch):
    root = _root(patch["package"])
    version = _version(patch["distributions"])
    if root is None or version is None:
        return True, "%s is not installed" % patch["package"]
    if _affected(version, patch["versions"]) is False:
        return True, "%s %s is outside %s: nothing to do" % (patch["package"], version, patch["versions"])
    texts, changed = {}, set()
    for f in patch["files"]:
        if f.get("versions") and _affected(version, f["versions"]) is False:
            continue  # this release carries another text of the same fix
        path = os.path.join(root, f["path"])
        if path not in texts:
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8", newline="") as fh:
                texts[path] = fh.read()
        state = _state(texts[path], f)
        if state == "fixed":
            continue
        if state != "bug":
            return False, "%s: the text to replace is not found exactly once" % f["path"]
        texts[path] = texts[path].replace(f["before"], f["after"], 1)
        changed.add(path)
    for path in sorted(changed):
        _write(path, texts[path])
    return True, "patched %d file(s) of %s %s" % (len(changed), patch["package"], version)


def verify(patch):
    root = _root(patch["package"])
    if root is None:
        return True, "%s is not installed" % patch["package"]
    proc = subprocess.run(
        [sys.executable, "-c", patch["verify"], root], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True
    )
    return proc.returncode == 0, proc.stdout.strip()


def main(patches, mode):
    failed = 0
    for patch in patches:
        ok, message = (apply if mode == "apply" else verify)(patch)
        print("servectl %s %s: %s%s" % (mode, patch["id"], "" if ok else "FAILED: ", message))
        failed += not ok
    sys.exit(1 if failed else 0)
