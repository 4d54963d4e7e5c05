"""The log parser on real vLLM start-up logs: a CPU start captured here and GPU excerpts from public issues."""

from pathlib import Path

from servectl.plan.vllm_log import parse_text

LOGS = Path(__file__).parent / "data" / "logs"


def read(name: str):
    return parse_text((LOGS / name).read_text())


def test_cpu_start_figures():
    f = read("cpu-start-tiny-qwen3next.log")
    assert f.vllm_version == "0.32.0"
    assert f.device == "CPU"
    assert f.kv_cache_tokens == 190_650
    assert f.max_concurrency == 93.09 and f.max_concurrency_len == 2048
    assert f.available_kv_gib == 0.06 and f.total_memory_gib == 7.84
    assert f.mamba_padding_pct == 75.34
    assert f.kv_cache_memory_bytes == 64 * 2**20
    assert f.num_gpu_blocks == 2048  # from the live server's cache_config_info metric in the header
    assert f.max_model_len == 2048
    assert f.args["enforce_eager"] == "True"


def test_gpu_v024_excerpts():
    a = read("gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-a.log")
    b = read("gpu-v0.24-rtx5090-qwen3.6-nvfp4-fp8kv-b.log")
    assert (a.device, a.available_kv_gib, a.kv_cache_tokens, a.max_concurrency) == ("GPU", 5.98, 567_978, 4.33)
    assert (b.vllm_version, b.available_kv_gib, b.kv_cache_tokens, b.max_concurrency) == ("0.24.0", 6.01, 569_878, 4.35)
    assert a.args["kv_cache_dtype"] == "fp8" and a.args["enable_prefix_caching"] == "True"
    assert a.max_model_len == 131_072


def test_gpu_load_and_cudagraph_lines():
    f = read("gpu-a6000-qwen3.8-27b-nvfp4-load.log")
    assert (f.weights_gib, f.block_size, f.mamba_padding_pct) == (19.75, 1568, 0.13)
    g = read("gpu-cudagraph-estimate-qwen3.5-gguf.log")
    assert g.cudagraph_estimate_gib == 0.73
    assert g.num_gpu_blocks == 512  # the override, not the 0 it replaced


def test_first_occurrence_wins_and_phases():
    text = (
        "INFO [gpu_worker.py:508] Free memory on device (30.85/31.36 GiB) on startup.\n"
        "INFO Available KV cache memory: 3.05 GiB\nINFO Available KV cache memory: 9.99 GiB\n"
    )
    f = parse_text(text)
    assert (f.free_memory_gib, f.total_memory_gib, f.available_kv_gib) == (30.85, 31.36, 3.05)
