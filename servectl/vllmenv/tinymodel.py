"""The `tiny-cpu` test model, generated locally on first use (never downloaded).

Generation runs in the vLLM environment's interpreter (servectl does not import torch or
transformers); the result is cached per generator version and moved into place atomically.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from servectl.errors import CheckFailed
from servectl.paths import cache_dir
from servectl.vllmenv.location import find_vllm_python

Variant = str  # "scripted", "random", "scripted-pp" (pipeline parallel 2), or "family:NAME" (family_names())
_GENERATOR = Path(__file__).with_name("_tinymodel_gen.py")


def family_names() -> list[str]:
    """The tiny family checkpoints the generator makes (`family:NAME`), read from its FAMILIES table."""
    import ast

    for node in ast.parse(_GENERATOR.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        if isinstance(value, ast.Dict) and any(getattr(t, "id", None) == "FAMILIES" for t in targets):
            return [k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


def generator_version() -> str:
    """Changes whenever the generator changes, so a stale cached model is never reused."""
    return hashlib.sha256(_GENERATOR.read_bytes()).hexdigest()[:12]


def model_dir(variant: Variant = "scripted", root: Path | None = None) -> Path:
    name = f"tiny-{variant.split(':', 1)[1]}" if variant.startswith("family:") else f"tiny-cpu-{variant}"
    return (root or cache_dir() / "models") / f"{name}-{generator_version()}"


def ensure_tiny_model(variant: Variant = "scripted", root: Path | None = None, python: str | None = None) -> Path:
    """Return the checkpoint directory of the tiny model, generating it if needed (seconds). `family:NAME` makes a
    tiny random checkpoint of another family (family_names()), e.g. ensure_tiny_model("family:gemma3")."""
    if variant.startswith("family:") and variant.split(":", 1)[1] not in family_names():
        from servectl.errors import UserError

        raise UserError(f"no tiny checkpoint {variant!r}", f"families: {', '.join(family_names())}")
    return generate(model_dir(variant, root), _GENERATOR, [variant], "the tiny model", python)


def generate(target: Path, generator: Path, args: list[str], what: str, python: str | None = None) -> Path:
    """`target`, generated when missing by `generator OUT_DIR *args` in a vLLM environment's interpreter (any: each
    has torch and transformers), in a folder beside it and moved into place at once (a concurrent generation of
    the same checkpoint is fine: the first one in place stays)."""
    if (target / "servectl-tiny.json").is_file():
        return target
    interpreter = find_vllm_python(python, any_env=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.run(
            [str(interpreter), str(generator), str(work / "model"), *args], capture_output=True, text=True, env=env, timeout=600
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CheckFailed(f"generating {what} failed: {tail}", f"the vLLM environment is {interpreter}")
        try:
            os.rename(work / "model", target)
        except OSError:
            if not (target / "servectl-tiny.json").is_file():  # lost a race to another process: theirs is fine
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def for_render(python: str | None = None) -> tuple[Path, str | None]:
    """The tiny model's directory for a rendering that mounts it, generated here when missing and a vLLM
    environment can make it; (path, a note for the user when it could not be made)."""
    from servectl.errors import UserError

    target = model_dir()
    if (target / "servectl-tiny.json").is_file():
        return target, None
    try:
        return ensure_tiny_model(python=python), None
    except UserError as exc:
        return target, (
            f"the rendering names the tiny model at {target}, which is not generated yet ({exc.message}); "
            "`servectl up tiny-cpu` generates it"
        )
