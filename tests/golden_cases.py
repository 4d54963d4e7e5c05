"""Every golden rendering and where it lives: tests/data/golden/render/ (every format x every
recipe/profile pair, servectl's settings and --card), tests/data/golden/k8s/ (Kubernetes and
multi-node formats) and deploy/ (the four card deployments).

`scripts/regen-golden` rewrites all of them after an intended change; tests/test_render_golden.py
and tests/test_k8s.py fail whenever a rendering differs from its file.
"""

from __future__ import annotations

from pathlib import Path

from servectl.catalog.load import load_catalog
from servectl.render import outputs
from servectl.plan.service import launch_spec
from servectl.spec.models import LaunchOptions
from servectl.spec.resolve import Request, card_profile_names

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "data" / "golden" / "render"
K8S_GOLDEN_DIR = ROOT / "tests" / "data" / "golden" / "k8s"
MONITORING_GOLDEN_DIR = ROOT / "tests" / "data" / "golden" / "monitoring"
DEPLOY_DIR = ROOT / "deploy"
FORMATS = ["argv", "docker", "vllm-config", "compose", "systemd"]
_EXT = {"argv": "sh", "docker": "sh", "vllm-config": "yaml", "compose": "yaml", "systemd": "service", "ray-nodes": "sh"}
# The four card deployments of the reference: (folder, recipe, profile, formats)
DEPLOY_CASES = [
    ("qwen3.5-35b-a3b-mxfp4", "qwen3.5-35b-a3b-mxfp4", "rtx-5090", ["argv", "compose"]),
    ("qwen3.5-35b-a3b-gptq-8bit-rocm-4gpu", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", ["argv", "compose"]),
    ("qwen3.5-35b-a3b-nvfp4-rtx-5090", "qwen3.5-35b-a3b-nvfp4", "rtx-5090", ["docker", "compose"]),
    ("qwen3.5-35b-a3b-nvfp4-rtx-pro-6000-blackwell", "qwen3.5-35b-a3b-nvfp4", "rtx-pro-6000-blackwell", ["docker", "compose"]),
]
# (file stem, recipe, profile, format, nodes): the four pairs with model-card settings, rendered with
# servectl's own settings, and a 2-node variant in every multi-node format.
K8S_CASES: list[tuple[str, str, str, str, int]] = [
    ("mxfp4-rtx-5090", "qwen3.5-35b-a3b-mxfp4", "rtx-5090", "k8s", 1),
    ("gptq-8bit-rocm-4gpu", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", "k8s", 1),
    ("nvfp4-rtx-pro-6000-blackwell", "qwen3.5-35b-a3b-nvfp4", "rtx-pro-6000-blackwell", "k8s", 1),
    ("nvfp4-rtx-5090", "qwen3.5-35b-a3b-nvfp4", "rtx-5090", "k8s", 1),
    ("gptq-8bit-rocm-4gpu-2nodes", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", "k8s-lws", 2),
    ("gptq-8bit-rocm-4gpu-2nodes", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", "k8s-raycluster", 2),
    ("gptq-8bit-rocm-4gpu-2nodes", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", "ray-nodes", 2),
]


# (file stem, recipe, profile, format, nodes, with the preset proxy): `render --with-monitoring`
MONITORING_CASES: list[tuple[str, str, str, str, int, bool]] = [
    ("nvfp4-rtx-5090-proxy", "qwen3.5-35b-a3b-nvfp4", "rtx-5090", "compose", 1, True),
    ("tiny-cpu", "tiny-cpu", "cpu", "compose", 1, False),
    ("gptq-8bit-rocm-4gpu", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", "k8s", 1, False),
    ("gptq-8bit-rocm-4gpu-2nodes", "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", "k8s-lws", 2, False),
]


# (file stem, fleet file under tests/data/fleets/, layout): `render --fleet F --format compose --with-monitoring`
FLEET_MONITORING_CASES: list[tuple[str, str, str]] = [
    ("fleet-pair-front-door", "pro6000-pair.yaml", "front-door"),
    ("fleet-pair-services", "pro6000-pair.yaml", "services"),
]
FLEETS_DIR = ROOT / "tests" / "data" / "fleets"
# Where the goldens say the fleet file lives (the front door mounts it; `render` uses its real path).
FLEET_FILE_IN_GOLDEN = "/etc/servectl/fleets/{name}"


def cases(cat=None) -> list[tuple[str, str, bool]]:
    """(recipe, profile, card) for every pair that makes sense."""
    cat = cat or load_catalog()
    out = []
    for recipe in cat.models.values():
        out += [(recipe.name, p, False) for p in recipe.profiles]
        out += [(recipe.name, p, True) for p in card_profile_names(recipe)]
    return out


def golden_name(recipe: str, profile: str, card: bool, fmt: str) -> str:
    return f"{recipe}@{profile}{'.card' if card else ''}.{fmt}.{_EXT[fmt]}"


def k8s_golden_name(stem: str, fmt: str) -> str:
    return f"{stem}.{fmt}.{_EXT.get(fmt, 'yaml')}"


# Where the goldens say a generated checkpoint (the tiny model) lives; `render` uses its real directory.
GENERATED_MODEL_DIR = "/srv/models/tiny-cpu-scripted"


def _spec(recipe: str, profile: str, card: bool = False, nodes: int | None = None):
    """The launch as `servectl render` builds it: resolved, then servectl's --max-num-seqs (plan.service.launch_spec)."""
    cat = load_catalog()
    model = cat.model(recipe)
    opts = LaunchOptions(model_path=GENERATED_MODEL_DIR) if model.generated and not card else LaunchOptions()
    return launch_spec(Request(model, cat.gpu(profile), card=card, options=opts, nodes=nodes))


def golden_outputs() -> dict[str, str]:
    out = {}
    for recipe, profile, card in cases():
        spec = _spec(recipe, profile, card)
        for fmt in FORMATS:
            out[golden_name(recipe, profile, card, fmt)] = outputs.text(fmt, spec)
    return out


def k8s_golden_outputs() -> dict[str, str]:
    return {
        k8s_golden_name(stem, fmt): outputs.text(fmt, _spec(recipe, profile, nodes=outputs.nodes_for(fmt, nodes)), nodes=nodes)
        for stem, recipe, profile, fmt, nodes in K8S_CASES
    }


def monitoring_golden_outputs() -> dict[str, str]:
    from servectl.render.request import monitoring_dashboard

    out = {}
    for stem, recipe, profile, fmt, nodes, proxy in MONITORING_CASES:
        spec = _spec(recipe, profile)
        text = outputs.with_monitoring(
            fmt,
            spec,
            outputs.text(fmt, spec, nodes=nodes if nodes > 1 else None),
            monitoring_dashboard(spec),
            spec.port + 1 if proxy else None,
        )
        out[f"{stem}.{fmt}.yaml"] = text
    for stem, file, layout in FLEET_MONITORING_CASES:
        out[f"{stem}.compose.yaml"] = fleet_monitoring_text(file, layout)
    return out


def fleet_monitoring_text(file: str, layout: str) -> str:
    from dataclasses import replace

    from servectl.fleet import deploy, sizing

    fleet = replace(sizing.load(FLEETS_DIR / file), path=Path(FLEET_FILE_IN_GOLDEN.format(name=file)))
    dashboard, _ = deploy.dashboard_for(fleet, layout)
    return deploy.render(fleet, "compose", layout=layout, dashboard=dashboard)[1]


def deploy_outputs() -> dict[str, tuple[str, int]]:
    """deploy/FOLDER/FILE -> (contents, mode) for the card deployments."""
    out = {}
    for folder, recipe, profile, formats in DEPLOY_CASES:
        spec = _spec(recipe, profile, True)
        for fmt in formats:
            out[f"{folder}/{outputs.filename(fmt, spec)}"] = outputs.file_text(fmt, spec, outputs.text(fmt, spec))
    return out
