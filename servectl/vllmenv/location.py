"""Finding the vLLM environment servectl drives (never imported into servectl's own process).

Order: an explicit --python, then $SERVECTL_VLLM_PYTHON, then the default venv made by
`servectl bootstrap`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from servectl.catalog import versions
from servectl.errors import UserError
from servectl.paths import data_dir

if TYPE_CHECKING:
    from servectl.vllmenv.args import VllmOptions

DEFAULT_CPU_VLLM = versions.CPU_BUILD_VLLM


def default_venv(version: str = DEFAULT_CPU_VLLM, cpu: bool = True) -> Path:
    return data_dir() / "venvs" / f"vllm-{version}{'-cpu' if cpu else ''}"


def find_vllm_python(explicit: str | os.PathLike | None = None) -> Path:
    """The interpreter of the vLLM environment, or a UserError saying how to make one."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("SERVECTL_VLLM_PYTHON"):
        candidates.append(Path(os.environ["SERVECTL_VLLM_PYTHON"]))
    else:
        candidates.append(default_venv() / "bin" / "python")
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    raise UserError(
        f"no vLLM environment at {candidates[0]}",
        "run `servectl bootstrap --cpu` (or `servectl bootstrap` on a GPU machine), or pass --python PATH",
    )


def serve_options(python: str | os.PathLike) -> "VllmOptions":
    """`vllm serve`'s options as the environment's own vLLM declares them (servectl/vllmenv/_vllm_options_dump.py).

    Importing vLLM's parser costs seconds, so the answer is cached per interpreter and installed vLLM
    (the dist-info directory names carry the version: a reinstall gets a fresh entry)."""
    import hashlib
    import json
    import subprocess

    from servectl.errors import CheckFailed
    from servectl.fsutil import write_atomic
    from servectl.paths import cache_dir
    from servectl.vllmenv.args import VllmOptions

    python = Path(python)
    probe = subprocess.run([str(python), "-c", "import sysconfig,glob,os;p=sysconfig.get_paths()['purelib'];"
                            "print(p);print(*sorted(os.path.basename(d) for d in glob.glob(p+'/vllm*.dist-info')))"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        raise CheckFailed(f"cannot run {python}", (probe.stderr.strip().splitlines() or ["no output"])[-1])
    key = hashlib.sha256(f"{python.absolute()}\n{probe.stdout}".encode()).hexdigest()[:16]
    cached = cache_dir() / "vllm-options" / f"{key}.json"
    if cached.is_file():
        try:
            return VllmOptions(json.loads(cached.read_text()))
        except (ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    script = Path(__file__).with_name("_vllm_options_dump.py")
    env = {**os.environ, "VLLM_TARGET_DEVICE": os.environ.get("VLLM_TARGET_DEVICE", "cpu")}
    proc = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckFailed(f"cannot read vLLM's options from {python}: {tail}", "is vLLM installed there? `servectl bootstrap`")
    data = json.loads(proc.stdout)
    write_atomic(cached, json.dumps(data) + "\n")
    return VllmOptions(data)
