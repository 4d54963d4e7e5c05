"""What checking the known-bug catalog against the released wheels costs on a cold cache.

    .venv/bin/python benchmarks/known_bugs_wheels.py

Reads, into an empty temporary cache, every wheel member the catalog's evidence names (the files each entry
edits or marks, per release, plus each release's METADATA), the way tests/test_known_bugs_wheels.py does, and
prints the releases, members, bytes fetched by HTTP range requests and the wall time; then reads them again
(warm cache). Figures depend on the network and the registry: they go to docs/measurements.md, never asserted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import wheel_members  # noqa: E402

from servectl.catalog.known_bugs import load_guard_specs, load_patch_specs  # noqa: E402
from servectl.vllmenv import patches  # noqa: E402


def wanted() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entry in [*load_patch_specs(), *load_guard_specs()]:
        rels = (patches.paths(entry) if hasattr(entry, "files") else []) + [m.path for m in entry.markers]
        for version in entry.evidence.get("vllm", {}):
            if str(version).replace(".", "").isdigit():
                out.setdefault(str(version), set()).update(f"vllm/{r}" for r in rels)
    return out


def read_all(members: dict[str, set[str]]) -> None:
    for version, paths in members.items():
        wheel_members.members(version, sorted(paths | {f"vllm-{version}.dist-info/METADATA"}))


def main() -> None:
    members = wanted()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SERVECTL_WHEEL_MEMBERS"] = cache
        start = time.monotonic()
        read_all(members)
        cold = time.monotonic() - start
        size = sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file())
        start = time.monotonic()
        read_all(members)
        warm = time.monotonic() - start
    print(f"releases: {len(members)}, members: {sum(len(v) + 1 for v in members.values())}")
    print(f"cold: {cold:.1f} s (cached afterwards: {size / 2**20:.1f} MiB, central directories included)")
    print(f"warm: {warm:.2f} s")


if __name__ == "__main__":
    main()
