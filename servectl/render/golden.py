"""Golden renderings (tests/data/golden/render/) and the deploy/ examples, and the command that rewrites them.

`scripts/regen-golden` (python -m servectl.render.golden) rewrites both after an intended change;
tests/test_render_golden.py fails whenever a rendering differs from its file.
Cases: every format x every recipe/profile pair with servectl's settings, and every pair the model
card publishes settings for (--card).
"""

from __future__ import annotations

import sys
from pathlib import Path

from servectl.render import outputs

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "data" / "golden" / "render"
DEPLOY_DIR = ROOT / "deploy"
FORMATS = ["argv", "docker", "vllm-config", "compose", "systemd"]
_EXT = {"argv": "sh", "docker": "sh", "vllm-config": "yaml", "compose": "yaml", "systemd": "service"}
# The four card deployments of the reference: (folder, recipe, profile, formats)
DEPLOY_CASES = [
    ("qwen3.5-35b-a3b-mxfp4", "qwen3.5-35b-a3b-mxfp4", "rtx-5090", ["argv", "compose"]),
    ("qwen3.5-35b-a3b-gptq-8bit-rocm-4gpu", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", ["argv", "compose"]),
    ("qwen3.5-35b-a3b-nvfp4-rtx-5090", "qwen3.5-35b-a3b-nvfp4", "rtx-5090", ["docker", "compose"]),
    ("qwen3.5-35b-a3b-nvfp4-rtx-pro-6000-blackwell", "qwen3.5-35b-a3b-nvfp4", "rtx-pro-6000-blackwell", ["docker", "compose"]),
]


def cases(cat=None) -> list[tuple[str, str, bool]]:
    """(recipe, profile, card) for every pair that makes sense."""
    from servectl.catalog import load_catalog
    from servectl.deployment import card_profile_names

    cat = cat or load_catalog()
    out = []
    for recipe in cat.models.values():
        out += [(recipe.name, p, False) for p in recipe.profiles]
        out += [(recipe.name, p, True) for p in card_profile_names(recipe)]
    return out


def golden_name(recipe: str, profile: str, card: bool, fmt: str) -> str:
    return f"{recipe}@{profile}{'.card' if card else ''}.{fmt}.{_EXT[fmt]}"


def _spec(recipe: str, profile: str, card: bool):
    from servectl.catalog import load_catalog
    from servectl.deployment import Request, resolve

    cat = load_catalog()
    return resolve(Request(cat.model(recipe), cat.gpu(profile), card=card))


def golden_outputs() -> dict[str, str]:
    out = {}
    for recipe, profile, card in cases():
        spec = _spec(recipe, profile, card)
        for fmt in FORMATS:
            out[golden_name(recipe, profile, card, fmt)] = outputs.text(fmt, spec)
    return out


def deploy_outputs() -> dict[str, tuple[str, int]]:
    """deploy/FOLDER/FILE -> (contents, mode) for the card deployments."""
    out = {}
    for folder, recipe, profile, formats in DEPLOY_CASES:
        spec = _spec(recipe, profile, True)
        for fmt in formats:
            out[f"{folder}/{outputs.filename(fmt, spec)}"] = outputs.file_text(fmt, spec, outputs.text(fmt, spec))
    return out


def regen() -> list[Path]:
    from servectl.fsutil import write_atomic

    written = []
    for name, text in golden_outputs().items():
        write_atomic(GOLDEN_DIR / name, text, mode=0o644)
        written.append(GOLDEN_DIR / name)
    stale = {p for p in GOLDEN_DIR.glob("*") if p.is_file()} - set(written)
    for path in stale:
        path.unlink()
    for rel, (text, mode) in deploy_outputs().items():
        write_atomic(DEPLOY_DIR / rel, text, mode=mode)
        written.append(DEPLOY_DIR / rel)
    return written


if __name__ == "__main__":  # python -m servectl.render.golden
    paths = regen()
    print(f"wrote {len(paths)} files under {GOLDEN_DIR.relative_to(ROOT)} and {DEPLOY_DIR.relative_to(ROOT)}", file=sys.stderr)
