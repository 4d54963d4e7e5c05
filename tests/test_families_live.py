"""Every KV-cache layout family on the real vLLM CPU build: `servectl plan DIR` against what vLLM logs, exactly.

Each tiny random checkpoint (servectl/vllmenv/_tinymodel_gen.py FAMILIES: Llama, Qwen3 dense and MoE, Mistral's
all-layer window, Gemma 2/3's interleaved windows, gpt-oss's even-layer window, DeepSeek-V3-style MLA, GLM-4.5,
Nemotron-H, Granite 4.0-H, Falcon-H1, Jamba) is started by vLLM up to its KV-cache sizing and then asked for two
tokens (tests/vllm_kv_starts.py: the engine `vllm serve` builds, in-process, one start at a time from one
interpreter). The plan for the same flags must give vLLM's logged KV tokens and maximum concurrency exactly, and
the KV groups and block sizes vLLM logs. Jamba (Mamba1) is refused by the plan on CPU; the test shows why: vLLM
sizes its KV cache, then fails the first request.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest

from waits import START_S
from servectl.catalog.load import load_catalog
from servectl.plan import planner, service
from servectl.plan.request import PlanRequest
from servectl.plan.vllm_log import parse_text

pytestmark = [pytest.mark.server, pytest.mark.slow]
HERE = Path(__file__).parent
WINDOWED = ["--max-model-len", "4096", "--max-num-batched-tokens", "256"]  # windows + in-flight tokens < the length
BASE = ["--enforce-eager", "--dtype", "bfloat16", "--kv-cache-memory-bytes", "64M"]

# case -> (family checkpoint, flags after BASE)
CASES: dict[str, tuple[str, list[str]]] = {
    **{
        f: (f, WINDOWED)
        for f in (
            "llama",
            "llama-hd96",
            "qwen3",
            "qwen3-moe",
            "mistral",
            "gemma2",
            "gemma3",
            "gemma3-pattern3",
            "gpt-oss",
            "deepseek-v3",
            "glm4-moe",
            "nemotron-h",
            "granite-h",
            "falcon-h1",
            "jamba",
        )
    },
    "mistral-defaults": ("mistral", ["--max-model-len", "8192"]),  # vLLM's own max_num_batched_tokens
    "gpt-oss-defaults": ("gpt-oss", []),  # the native length
    "gemma3-hma-off": ("gemma3", [*WINDOWED, "--disable-hybrid-kv-cache-manager"]),
    "gpt-oss-hma-off": ("gpt-oss", [*WINDOWED, "--disable-hybrid-kv-cache-manager"]),
    "gemma2-auto": ("gemma2", ["--max-model-len", "auto", "--max-num-batched-tokens", "256", "--kv-cache-memory-bytes", "4M"]),
    "falcon-h1-auto": ("falcon-h1", ["--max-model-len", "auto", "--kv-cache-memory-bytes", "6M"]),
    "nemotron-h-no-prefix": ("nemotron-h", [*WINDOWED, "--no-enable-prefix-caching"]),
    "qwen3-moe-block64": ("qwen3-moe", [*WINDOWED, "--block-size", "64"]),
    "granite-h-block64": ("granite-h", [*WINDOWED, "--block-size", "64"]),
}
REFUSED = {"jamba"}  # Mamba1: the CPU build sizes it, then fails the first request


def _flags(case: str) -> list[str]:
    flags = list(BASE)
    extra = CASES[case][1]
    if "--kv-cache-memory-bytes" in extra:  # the case's own KV size replaces the base one
        j = flags.index("--kv-cache-memory-bytes")
        del flags[j : j + 2]
    return flags + extra


@pytest.fixture(scope="module")
def starts(tmp_path_factory):
    """case -> (checkpoint, vLLM's log figures, the start's result)."""
    from servectl.vllmenv.location import find_vllm_python
    from tiny_checkpoints import ensure_tiny_models

    python = find_vllm_python()  # fails (not skips) without the vLLM CPU environment: scripts/test bootstraps it
    dirs = ensure_tiny_models(sorted({f"family:{f}" for f, _ in CASES.values()}))
    root = tmp_path_factory.mktemp("family-starts")
    cases = [
        {
            "name": name,
            "argv": ["--model", str(dirs[f"family:{fam}"]), *_flags(name)],
            "env": {},
            "log": str(root / f"{name}.log"),
            "timeout": START_S,
            "generate": True,
        }
        for name, (fam, _) in CASES.items()
    ]
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run(
        [str(python), str(HERE / "vllm_kv_starts.py")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    return {
        c["name"]: (
            dirs[f"family:{CASES[c['name']][0]}"],
            parse_text(Path(c["log"]).read_text(errors="replace")),
            results[c["name"]],
            c["log"],
        )
        for c in cases
    }


@functools.lru_cache(maxsize=None)
def _recipe(model: Path):
    """The recipe servectl derives for the checkpoint directory (what `servectl plan DIR` plans)."""
    from servectl.plan.any_model import resolve_model

    return resolve_model(str(model)).recipe


@pytest.fixture(scope="module")
def target():
    return service.target_for(load_catalog().gpu("cpu"))  # the installed CPU build and this host's CPU features


@pytest.mark.parametrize("case", sorted(set(CASES) - REFUSED))
def test_plan_equals_vllm_log(starts, target, case):
    model, log, result, path = starts[case]
    assert result["rc"] == 0 and log.kv_cache_tokens is not None, (result, Path(path).read_text()[-3000:])
    assert result["generated"] == 2, result  # the layout vLLM sized also serves a request
    plan = service.build(PlanRequest(_recipe(model), "cpu", tuple(_flags(case))), target=target)
    host = target.host.describe()
    assert plan.kv_cache_tokens_logged == log.kv_cache_tokens, host
    assert round(plan.max_concurrency, 2) == log.max_concurrency, host
    assert plan.max_model_len == log.max_concurrency_len
    if log.block_size is not None:  # "Setting attention block size to N tokens" (hybrid alignment)
        assert plan.block_size == log.block_size
    blocks = [g["block_size"] for g in plan.layout]
    # vLLM logs its groups' block sizes when there are several ("kv cache group sizes (...)")
    assert blocks == (log.group_block_sizes or [blocks[0]]), (plan.layout, log.group_block_sizes)


def test_jamba_is_refused_on_cpu_and_vllm_fails_its_first_request(starts, target, cli):
    model, log, result, _ = starts["jamba"]
    r = cli("plan", str(model), "--gpu", "cpu", "--vllm-version", target.version, *_flags("jamba"))
    assert r.exit_code == 2 and "Mamba1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # what the refusal says: vLLM sizes the cache (the plan's figures match it) and the first request fails
    assert log.kv_cache_tokens is not None and result["generated"] == 0 and "IndexError" in result["error"]
    recipe = _recipe(model)
    s = planner.settings_from_flags(planner.va.parse_args(_flags("jamba")))
    plan = planner.predict(
        recipe, load_catalog().gpu("cpu"), s, vllm_version=target.version, host=target.host, check_target=False
    )
    assert (plan.kv_cache_tokens_logged, round(plan.max_concurrency, 2)) == (log.kv_cache_tokens, log.max_concurrency)


def test_hma_off_allocates_windows_as_full_attention(starts, target):
    """The same model with the hybrid manager off holds fewer tokens: its window layers get every block."""
    on = service.build(PlanRequest(_recipe(starts["gemma3"][0]), "cpu", tuple(_flags("gemma3"))), target=target)
    off = service.build(PlanRequest(_recipe(starts["gemma3-hma-off"][0]), "cpu", tuple(_flags("gemma3-hma-off"))), target=target)
    assert starts["gemma3"][1].kv_cache_tokens > starts["gemma3-hma-off"][1].kv_cache_tokens
    assert [g["kind"] for g in off.layout] == ["full_attention"] and len(on.layout) > 1
    assert any("hybrid KV-cache manager is off" in w for w in off.warnings)


def test_plan_cli_on_a_checkpoint_directory(starts, cli):
    """The user's path: `servectl plan DIR --json` (vLLM's own parser checks the flags), layout key included."""
    model, log, _, _ = starts["gemma3"]
    r = cli("plan", str(model), "--gpu", "cpu", "--json", *_flags("gemma3"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["kv_cache_tokens_logged"] == log.kv_cache_tokens
    kinds = [g["kind"] for g in d["layout"]]
    assert kinds.count("sliding_window") == 5 and kinds.count("full_attention") == 1
    assert all({"kind", "layers", "page_bytes", "block_size", "blocks_per_request"} <= set(g) for g in d["layout"])
