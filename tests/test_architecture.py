"""The package layout is the pipeline: each subpackage imports only from its own layer or the ones
below it (detect -> plan -> render -> verify -> launch -> observe -> cli), no module imports itself back
through a cycle, the commands stay thin, and light commands start without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "servectl"

# Lowest first. A module may import from its own layer and any layer listed before it.
LAYERS = [
    "foundation",
    "catalog",
    "hardware",
    "vllmenv",
    "checkpoint",
    "spec",
    "plan",
    "render",
    "verify",
    "proxy",
    "launch",
    "fleet",
    "observe",
    "bench",
    "cli",
]
FOUNDATION = {
    "servectl",
    "servectl.errors",
    "servectl.paths",
    "servectl.fsutil",
    "servectl.console",
    "servectl.strict",
    "servectl.redact",
    "servectl.netio",
}
CLI_MAX_LINES = 320  # lines as `ruff format` lays them out (one option argument per line where they wrap)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    if module == "servectl.__main__":
        return "cli"
    return module.split(".")[1]


def imports_of(path: Path) -> set[str]:
    """Every servectl module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("servectl")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("servectl") and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(
                    sub
                    if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                    or (PACKAGE.parent / Path(*sub.split("."))).is_dir()
                    else node.module
                )
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in MODULES if layer_of(m) not in LAYERS)
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"


def test_imports_point_down_the_pipeline():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for mod, path in sorted(MODULES.items()):
        for target in sorted(imports_of(path)):
            if target in MODULES and rank[layer_of(target)] > rank[layer_of(mod)]:
                upward.append(f"{mod} ({layer_of(mod)}) imports {target} ({layer_of(target)})")
    assert not upward, "imports against the pipeline:\n" + "\n".join(upward)


def test_no_import_cycles():
    # Imports inside functions count too: a deferred import still ties two modules together.
    graph = {m: {t for t in imports_of(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_cli_modules_stay_thin():
    big = {m: len(p.read_text().splitlines()) for m, p in MODULES.items() if layer_of(m) == "cli"}
    assert all(n <= CLI_MAX_LINES for n in big.values()), {m: n for m, n in big.items() if n > CLI_MAX_LINES}


# huggingface_hub.constants (the cache location) is cheap; its download machinery is not. pydantic
# validates files; a command served from the cached catalog needs neither it nor packaging.tags.
HEAVY = [
    "aiohttp",
    "httpx",
    "openai",
    "uvicorn",
    "docker",
    "psutil",
    "huggingface_hub.file_download",
    "prometheus_client",
    "pydantic",
    "annotated_types",
    "packaging.tags",
    "yaml",
    "matplotlib",
]
# A rendering plans without the host: no calibration store, no vLLM log reader, no checkpoint headers; its
# warnings go to a stderr that is no terminal here, so without rich.
RENDER_SKIPS = [
    "servectl.plan.calibrate",
    "servectl.plan.vllm_log",
    "servectl.plan.checkpoint",
    "servectl.plan.multinode",
    "servectl.checkpoint.safetensors",
    "huggingface_hub",
    "rich",
    "subprocess",
]


@pytest.mark.parametrize(
    "argv, skips",
    [
        (["--help"], HEAVY),
        (["render", "qwen3.5-35b-a3b-mxfp4", "--gpu", "rtx-5090", "--format", "argv"], HEAVY + RENDER_SKIPS),
        (["plan", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "32768"], HEAVY + ["servectl.plan.multinode"]),
    ],
)
def test_light_commands_import_only_what_they_use(argv, skips):
    code = (
        "import sys\nfrom servectl.cli import main\n"
        "try:\n    main.main(args=sys.argv[1:], prog_name='servectl', standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"heavy = [m for m in {skips!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    for _ in range(2):  # the first run may validate the catalog and cache it; the second reads the cache
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY=")]
        assert line, proc.stderr[-2000:]
    assert line[-1] == "HEAVY=", f"{' '.join(argv)} imported {line[-1][6:]}"


def test_plan_of_a_checkpoint_directory_loads_no_model_library(tmp_path):
    """`plan DIR` reads config.json and safetensors headers itself: no torch, transformers, safetensors library or
    hub download code. The derived recipe and the parser table are validated by the catalog schemas the first time
    (pydantic, YAML) and kept validated in the user cache: planning the same checkpoint again loads neither."""
    from checkpoint_dirs import checkpoint_dir

    path = checkpoint_dir("gemma-3-27b-text", tmp_path)
    heavy = ["torch", "transformers", "safetensors", "numpy", "huggingface_hub.file_download", "httpx", "aiohttp", "openai"]
    validation = ["pydantic", "annotated_types", "yaml"]
    code = (
        "import sys\nfrom servectl.cli import main\n"
        "try:\n    main.main(args=sys.argv[1:], prog_name='servectl', standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules))\n"
        f"print('VALIDATION=' + ','.join(m for m in {validation!r} if m in sys.modules))\n"
    )
    argv = [
        "plan",
        str(path),
        "--gpu",
        "rtx-pro-6000-blackwell",
        "--vllm-version",
        "0.32.0",
        "--max-model-len",
        "32768",
        "--json",
    ]
    for _ in range(2):  # the first run may validate and cache; the second reads the cache
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
        assert '"layout"' in proc.stdout, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-2] == "HEAVY="
    assert proc.stdout.strip().splitlines()[-1] == "VALIDATION="


def test_each_command_lives_in_a_module_named_after_it():
    from servectl.cli.app import COMMANDS

    misnamed = {name: target for name, (target, _) in COMMANDS.items() if target.split(":")[0] != f"servectl.cli.{name}"}
    assert not misnamed, misnamed
    helpers = {"servectl.cli", "servectl.cli.app", "servectl.cli.options", "servectl.cli.values", "servectl.cli.progress"}
    strays = sorted(
        m
        for m in MODULES
        if m.startswith("servectl.cli") and m not in helpers and m.removeprefix("servectl.cli.") not in COMMANDS
    )
    assert not strays, f"modules of servectl/cli/ that are no command: {strays}"


def test_no_broad_except_hides_what_it_caught():
    """`except Exception` (or BaseException, or bare) must re-raise, or use what it caught (say it in a warning,
    hand it on): an advisory step that fails says so with its reason, and a bug never disappears."""
    silent = []
    for mod, path in sorted(MODULES.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = node.type
            names = [caught] if not isinstance(caught, ast.Tuple) else list(caught.elts)
            broad = caught is None or any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException") for n in names)
            if not broad:
                continue
            body = ast.Module(body=node.body, type_ignores=[])
            raises = any(isinstance(n, ast.Raise) for n in ast.walk(body))
            used = node.name is not None and any(isinstance(n, ast.Name) and n.id == node.name for n in ast.walk(body))
            if not (raises or used):
                silent.append(f"{mod}:{node.lineno}")
    assert not silent, "broad excepts that hide what they caught: " + ", ".join(silent)
