"""`plan --plot` and `bench --plot`: the files are opened and read back (PNG by its magic bytes and by
matplotlib, SVG as XML), and the plan's own figures are found as text in the SVG."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

import pytest

from servectl.observe.plan_plot import kv_blocks, node_segments, segments

CARD_PAIRS = [
    ("qwen3.5-35b-a3b-nvfp4", "rtx-5090"),
    ("qwen3.5-35b-a3b-nvfp4", "rtx-pro-6000-blackwell"),
    ("qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu"),
    ("qwen3.6-35b-a3b-fp8", "dgx-spark"),
    ("tiny-cpu", "cpu"),
]


def _plan(cli, *args):
    result = cli("plan", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _svg_text(path) -> str:
    root = ET.parse(path).getroot()  # well-formed XML
    return " ".join(t for el in root.iter() if el.tag.endswith("text") for t in el.itertext())


@pytest.mark.parametrize("recipe,profile", CARD_PAIRS)
def test_svg_carries_the_plans_figures(cli, tmp_path, recipe, profile):
    out = tmp_path / "plan.svg"
    result = cli("plan", recipe, "--gpu", profile, "--plot", str(out))
    assert result.exit_code == 0, result.stderr
    plan = _plan(cli, recipe, "--gpu", profile)
    text = _svg_text(out)
    b = plan["budget"]
    for key in ("weights", "kv_available", "non_torch", "cudagraphs", "activation_peak", "device_total"):
        if b[key]:
            assert f"{b[key]:,.1f} MiB" in text, (key, b[key])
    assert f"{plan['num_blocks']:,} blocks of {plan['block_size']:,} tokens" in text
    assert f"pins {plan['kv_layout']['blocks_per_request']:,} blocks" in text
    assert f"{plan['max_concurrency']:.2f}x" in text


def test_segments_add_up_to_the_device():
    plan = {
        "budget": {
            "device_total": 1000.0,
            "context": 10.0,
            "weights": 500.0,
            "activation_peak": 20.0,
            "non_torch": 30.0,
            "calibration": 0.0,
            "cudagraphs": 40.0,
            "sampler_warmup": 5.0,
            "kv_available": 300.0,
        }
    }
    segs = segments(plan)
    assert [k for k, _, _ in segs] == [
        "context",
        "weights",
        "activation_peak",
        "non_torch",
        "cudagraphs",
        "sampler_warmup",
        "kv_cache",
        "headroom",
    ]
    assert sum(v for _, _, v in segs) == pytest.approx(1000.0) and segs[-1][2] == pytest.approx(95.0)
    plan["budget"]["kv_available"] = 500.0  # oversubscribed: negative headroom, drawn as "over the device"
    assert segments(plan)[-1][2] == pytest.approx(-105.0)


def test_png_per_node_is_a_real_png(cli, tmp_path):
    import matplotlib.image

    out = tmp_path / "nodes.png"
    result = cli("plan", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--nodes", "3", "--plot", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600 and pixels.std() > 0.05  # an image, not a blank page
    plan = _plan(cli, "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--nodes", "3")
    bars = node_segments(plan)
    assert len(bars) == 3
    for node, segs in zip(plan["nodes"]["per_node"], bars):
        got = dict((k, v) for k, _, v in segs)
        assert got["weights"] == node["weights_mib_per_rank"] and got["kv_cache"] == node["kv_used_mib_per_rank"]
        assert sum(got.values()) == pytest.approx(plan["budget"]["device_total"])


def test_kv_blocks_are_the_pool(cli):
    plan = _plan(cli, "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090", "--max-model-len", "32768")
    blocks = dict((k, n) for k, _, n in kv_blocks(plan))
    assert sum(blocks.values()) == plan["num_blocks"]
    assert blocks["attention"] + blocks["mamba"] == plan["kv_layout"]["blocks_per_request"] == 35  # 32 x 1056 tokens + 3 states


def test_bad_extension_and_missing_matplotlib_are_bad_input(cli, tmp_path, monkeypatch):
    result = cli("plan", "tiny-cpu", "--gpu", "cpu", "--plot", str(tmp_path / "x.pdf"))
    assert result.exit_code == 2 and ".svg or .png" in result.stderr and not (tmp_path / "x.pdf").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = cli("plan", "tiny-cpu", "--gpu", "cpu", "--plot", str(tmp_path / "x.svg"))
    assert result.exit_code == 2 and "servectl[plot]" in result.stderr and not (tmp_path / "x.svg").exists()


def test_bench_plot_shares_the_style_and_writes_svg(tmp_path):
    from servectl.bench.plot import plot_results

    doc = {
        "recipe": "tiny-cpu",
        "profile": "cpu",
        "vllm_version": "0.32.0",
        "results": [
            {
                "concurrency": c,
                "output_throughput": 100.0 * c,
                "request_throughput": 1.5 * c,
                "ttft_ms": {"p50": 10.0 * c, "p99": 20.0 * c},
                "tpot_ms": {"p50": 3.0, "p99": 6.5},
            }
            for c in (1, 4)
        ],
    }
    plot_results(doc, tmp_path / "bench.svg")
    text = _svg_text(tmp_path / "bench.svg")
    assert "throughput" in text and "latency" in text and "tiny-cpu / cpu / vLLM 0.32.0" in text
