"""`plan --nodes N`: memory per node and per rank of the multi-node layout, and the bottleneck node."""

from __future__ import annotations

import json
import subprocess

import pytest

from servectl.plan import multinode

CASES = [(40, 2), (40, 3), (41, 4), (4, 2), (7, 3), (48, 5), (40, 1)]


def test_layers_per_stage_are_vllms_get_pp_indices(vllm_python):
    """The split is the real vLLM function's, run in the vLLM environment (vllm/distributed/utils.py)."""
    code = (
        "import json; from vllm.distributed.utils import get_pp_indices as f; "
        f"print(json.dumps([[f(n, r, pp) for r in range(pp)] for n, pp in {CASES!r}]))"
    )
    out = subprocess.run(
        [str(vllm_python), "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"VLLM_TARGET_DEVICE": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    real = json.loads(out.stdout.strip().splitlines()[-1])
    for (n, pp), ranges in zip(CASES, real):
        assert multinode.pp_partition(n, pp) == [end - start for start, end in ranges], (n, pp)


def test_full_attention_layers_follow_the_interval(catalog):
    tiny = catalog.model("tiny-cpu").architecture
    assert multinode.full_attention_mask(tiny) == [False, False, False, True]  # the generator's layer_types
    big = catalog.model("qwen3.5-35b-a3b-gptq-8bit").architecture
    mask = multinode.full_attention_mask(big)
    assert sum(mask) == big.full_attention_layers and [i for i, m in enumerate(mask) if m][:2] == [3, 7]


def _plan(cli, *args):
    r = cli("plan", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--vllm-version", "0.32.0", "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_one_stage_reproduces_the_single_node_plan(cli, catalog):
    from servectl.plan import planner
    from servectl.plan.models import Plan

    d = _plan(cli, "--tensor-parallel-size", "4")
    assert "nodes" not in d
    plan = Plan(
        **{
            **{
                k: d[k]
                for k in (
                    "recipe",
                    "profile",
                    "vllm_version",
                    "device",
                    "max_model_len",
                    "block_size",
                    "num_blocks",
                    "kv_cache_tokens_logged",
                    "kv_cache_tokens_real",
                    "max_concurrency",
                    "budget",
                    "flags",
                    "fits",
                )
            },
            "total_vram_mib": d["total_vram_mib"],
            "figures": {},
        }
    )
    recipe, profile = catalog.model("qwen3.5-35b-a3b-gptq-8bit"), catalog.gpu("rocm-4gpu")
    s = planner.settings_from_flags(planner.va.parse_args(d["flags"]), {})
    lay = planner.layout_for(recipe, profile, s, vllm_version="0.32.0")
    one = multinode.split(plan, recipe.architecture, lay, 4, 1, kv_pinned=False)
    assert one["num_blocks"] == d["num_blocks"]
    assert one["per_node"][0]["weights_mib_per_rank"] == pytest.approx(d["budget"]["weights"], abs=0.1)


def test_two_nodes_split_weights_and_kv(cli):
    single = _plan(cli, "--tensor-parallel-size", "4")
    d = _plan(cli, "--nodes", "2")
    n = d["nodes"]
    assert (n["count"], n["tensor_parallel_size"], n["pipeline_parallel_size"], n["ranks"]) == (2, 4, 2, 8)
    assert n["layers_per_node"] == [20, 20]
    rows = n["per_node"]
    assert [r["layers"] for r in rows] == [[0, 19], [20, 39]]
    assert [(r["full_attention_layers"], r["linear_attention_layers"]) for r in rows] == [(5, 15), (5, 15)]
    # the weights are split, not copied: per rank x ranks adds up to the whole checkpoint
    assert sum(r["weights_mib_per_rank"] * r["ranks"] for r in rows) == pytest.approx(n["weights_mib_total"], abs=1)
    assert n["weights_mib_total"] == pytest.approx(single["budget"]["weights"] * 4, abs=1)
    # half the layers per rank: the memory they free goes to the KV cache
    assert all(r["kv_available_mib_per_rank"] > single["budget"]["kv_available"] for r in rows)
    assert n["num_blocks"] > single["num_blocks"]
    assert n["num_blocks"] == min(r["kv_blocks"] for r in rows) and n["fits"] is True
    assert "--tensor-parallel-size" in d["flags"] and d["flags"][d["flags"].index("--tensor-parallel-size") + 1] == "4"


def test_the_bottleneck_is_the_node_with_fewest_blocks(cli):
    n = _plan(cli, "--nodes", "3")["nodes"]
    assert n["layers_per_node"] == [13, 14, 13]  # vLLM gives the remainder to the stages before the last
    rows = n["per_node"]
    fewest = min(rows, key=lambda r: r["kv_blocks"])
    assert n["bottleneck"]["node"] == fewest["node"] == 0
    # a 248k x 2048 embedding outweighs one decoder layer: 13 layers + embedding > 14 layers
    assert rows[0]["weights_mib_per_rank"] > rows[1]["weights_mib_per_rank"]
    # the last stage's 9 linear layers fill fewer group slots than 10: a smaller block per rank
    assert rows[2]["kv_block_bytes_per_rank"] < rows[0]["kv_block_bytes_per_rank"]
    assert n["bottleneck"]["reason"].startswith("fewest KV blocks")
    # every rank gets the bottleneck's block count: the others leave memory unused
    assert all(r["kv_unused_mib_per_rank"] >= rows[0]["kv_unused_mib_per_rank"] for r in rows)
    assert rows[2]["kv_unused_mib_per_rank"] > 1000


def test_nodes_table_names_the_bottleneck(cli):
    r = cli("plan", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--vllm-version", "0.32.0", "--nodes", "3")
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("node 0: layers 0-12"))
    assert line.endswith("<- bottleneck") and "node 1: layers 13-26" in r.output
