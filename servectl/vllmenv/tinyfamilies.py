"""Scripted tiny checkpoints of other model families (Llama, Granite, Qwen3-MoE, ...), generated locally on first use
by the vLLM environment's interpreter (`_tinyfamily_gen.py`), cached per generator version and moved into place
atomically, as the tiny-cpu model is. They answer by the tiny model's script through the family's own model class,
so `servectl up DIR` + `servectl check` can pass on them, tool calls included."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from servectl.errors import CheckFailed, UserError
from servectl.paths import cache_dir
from servectl.vllmenv.location import find_vllm_python

_GENERATOR = Path(__file__).with_name("_tinyfamily_gen.py")
_BASE = Path(__file__).with_name("_tinymodel_gen.py")


def family_names() -> list[str]:
    """The FAMILIES the generator knows (read from its source, without running it)."""
    for node in ast.parse(_GENERATOR.read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(getattr(t, "id", None) == "FAMILIES" for t in node.targets)):
            return [k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


def generator_version() -> str:
    return hashlib.sha256(_GENERATOR.read_bytes() + _BASE.read_bytes()).hexdigest()[:12]


def family_dir(family: str, root: Path | None = None) -> Path:
    return (root or cache_dir() / "models") / f"tiny-{family}-scripted-{generator_version()}"


def ensure_tiny_family(family: str, root: Path | None = None, python: str | None = None) -> Path:
    """The scripted tiny checkpoint of `family`, generated when missing (seconds)."""
    if family not in family_names():
        raise UserError(f"no tiny checkpoint of family {family!r}", f"families: {', '.join(family_names())}")
    target = family_dir(family, root)
    if (target / "servectl-tiny.json").is_file():
        return target
    interpreter = find_vllm_python(python)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.run([str(interpreter), str(_GENERATOR), str(work / "model"), family],
                              capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CheckFailed(f"generating the tiny {family} checkpoint failed: {tail}", f"the vLLM environment is {interpreter}")
        try:
            os.rename(work / "model", target)
        except OSError:
            if not (target / "servectl-tiny.json").is_file():  # lost a race to another process: theirs is fine
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
