"""The weight format of a checkpoint, read as vLLM reads it: config.json's `quantization_config` (its
`quant_method` picks vLLM's quantization class, vllm/model_executor/layers/quantization/__init__.py), the older
`compression_config` key, ModelOpt's hf_quant_config.json, else the unquantized dtype.

The format names are servectl's catalog names (catalog.base.Quantization), which the GPU profiles list and
the guards check (FP4 formats need Blackwell and never run on ROCm or CPU; GPTQ on ROCm needs float16)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from servectl.errors import UserError


@dataclass(frozen=True)
class QuantChoice:
    quantization: str  # catalog.base.Quantization
    method: str | None  # quantization_config.quant_method as written (None: unquantized)
    reason: str
    required_dtype: str | None = None  # --dtype some hardware's kernels need
    required_dtype_reason: str | None = None


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) else {}


def config_dtype(config: dict[str, Any]) -> tuple[str | None, str]:
    """(torch dtype name, the key it came from): `dtype` (transformers 5) or `torch_dtype`, top level or text_config."""
    for where, cfg in (("", config), ("text_config.", _text_config(config))):
        for key in ("dtype", "torch_dtype"):
            value = cfg.get(key)
            if isinstance(value, str):
                return value.removeprefix("torch."), f"config.json {where}{key}"
    return None, "config.json has no dtype"


def _unquantized(config: dict[str, Any]) -> QuantChoice:
    dtype, where = config_dtype(config)
    if dtype in ("bfloat16", "bf16"):
        return QuantChoice("bf16", None, f"no quantization_config; {where} bfloat16")
    if dtype in ("float16", "half", "fp16"):
        return QuantChoice("fp16", None, f"no quantization_config; {where} float16")
    if dtype in ("float32", "float", None):
        return QuantChoice(
            "bf16",
            None,
            f"no quantization_config; {where} {dtype or '(none: float32)'}: vLLM's `--dtype auto` "
            "serves float32 checkpoints in the platform's preferred dtype, bfloat16 "
            "(vllm/config/model.py _resolve_auto_dtype, 'Downcast for float32 models')",
        )
    raise UserError(f"config.json dtype {dtype!r} is not one vLLM serves", "expected bfloat16, float16 or float32")


def _compressed_tensors(qc: dict[str, Any]) -> tuple[str, str]:
    """compressed-tensors: the global `format` or each config group's, and the weights' num_bits/type."""
    groups = [g for g in (qc.get("config_groups") or {}).values() if isinstance(g, dict)]
    formats = {str(g.get("format") or qc.get("format") or "") for g in groups} or {str(qc.get("format") or "")}
    weights = [g.get("weights") or {} for g in groups]
    if formats & {"nvfp4-pack-quantized"}:
        return "nvfp4", "format nvfp4-pack-quantized"
    if formats & {"mxfp4-pack-quantized"}:
        return "mxfp4", "format mxfp4-pack-quantized"
    for w in weights:
        bits, kind = w.get("num_bits"), str(w.get("type", "int"))
        if kind == "float" and bits == 8:
            return "fp8", "float 8-bit weights (W8A8 FP8)"
        if kind == "float" and bits == 4:
            return (
                ("nvfp4", "float 4-bit weights, group 16")
                if w.get("group_size") == 16
                else ("mxfp4", "float 4-bit weights, group 32")
            )
        if kind == "int" and bits == 4:
            return "int4", "int 4-bit weights (W4A16)"
        if kind == "int" and bits == 8:
            return "int8", "int 8-bit weights (W8A8 / W8A16)"
    raise UserError(
        f"compressed-tensors config with formats {sorted(formats)} and weights {weights[:1]} is not a format servectl plans",
        "supported: nvfp4, mxfp4, fp8, int4, int8 weights",
    )


def quantization_config(config: dict[str, Any], text: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """config.json's quantization_config (or the older compression_config), top level or in the text stack
    (`text`: the nested text config servectl.checkpoint.configfile found; default text_config)."""
    text = _text_config(config) if text is None else text
    qc = config.get("quantization_config") or config.get("compression_config") or text.get("quantization_config")
    return qc if isinstance(qc, dict) else None


def kv_cache_dtype(config: dict[str, Any], text: dict[str, Any] | None = None) -> tuple[Literal["auto", "fp8"], str]:
    """What `--kv-cache-dtype auto` resolves to for this checkpoint, and why: fp8 when its quantization config
    carries an 8-bit float KV-cache scheme (vllm/utils/torch_utils.py resolve_kv_cache_dtype_string)."""
    q = quantization_config(config, text) or {}
    inner: dict = q["quantization"] if isinstance(q.get("quantization"), dict) else {}
    algo = (
        inner.get("kv_cache_scheme")
        or q.get("kv_cache_scheme")
        or inner.get("kv_cache_quant_algo")
        or q.get("kv_cache_quant_algo")
    )
    fp8 = (isinstance(algo, dict) and algo.get("num_bits") == 8 and algo.get("type", "float") == "float") or (
        isinstance(algo, str) and "fp8" in algo.lower()
    )
    return (
        ("fp8", "quantization_config's KV cache scheme (utils/torch_utils.py resolve_kv_cache_dtype_string)")
        if fp8
        else ("auto", "model dtype")
    )


def quantization(
    config: dict[str, Any], hf_quant_config: dict[str, Any] | None = None, text: dict[str, Any] | None = None
) -> QuantChoice:
    """The checkpoint's weight format, and why (`text`: as for quantization_config)."""
    qc = quantization_config(config, text)
    if qc is None and isinstance(hf_quant_config, dict):
        algo = str((hf_quant_config.get("quantization") or {}).get("quant_algo") or "")
        qc = {"quant_method": "modelopt", "quant_algo": algo}
    if qc is None:
        return _unquantized(config)
    # vLLM lower-cases the method and spells compressed-tensors one way
    # (transformers_utils/model_arch_config_convertor.py _normalize_quantization_config)
    method = str(qc.get("quant_method") or "").lower().replace("compressed_tensors", "compressed-tensors")
    where = f"quantization_config.quant_method {method}"
    if method in ("fp8", "fbgemm_fp8", "ptpc_fp8"):
        return QuantChoice("fp8", method, f"{where} (FP8 e4m3 weights)")
    if method in ("mxfp4", "gpt_oss_mxfp4"):
        return QuantChoice("mxfp4", method, f"{where} (vLLM renames it gpt_oss_mxfp4 for gpt-oss: models/config.py)")
    if method in ("gptq", "gptq_marlin", "gptqmodel"):
        bits = qc.get("bits")
        if bits not in (4, 8):
            raise UserError(f"GPTQ with {bits} bits is not a format servectl plans", "supported: 4 and 8 bits")
        return QuantChoice(
            f"gptq-int{bits}",
            method,
            f"{where}, bits {bits}",
            required_dtype="float16",
            required_dtype_reason="ROCm's GPTQ kernels have no bfloat16 path: --dtype float16 there "
            "(servectl.spec.guards gptq-rocm-dtype)",
        )
    if method == "awq":
        bits = qc.get("bits", qc.get("w_bit"))
        if bits != 4:
            raise UserError(f"AWQ with {bits} bits is not a format servectl plans", "supported: 4-bit AWQ")
        return QuantChoice("awq-int4", method, f"{where}, bits 4")
    if method == "compressed-tensors":
        fmt, why = _compressed_tensors(qc)
        return QuantChoice(fmt, method, f"{where}: {why}")
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(qc.get("quant_algo") or ("NVFP4" if method == "modelopt_fp4" else "")).upper()
        if algo == "FP8":
            return QuantChoice("fp8", method, f"{where}, quant_algo FP8")
        if algo in ("NVFP4", "FP4"):
            return QuantChoice("nvfp4", method, f"{where}, quant_algo {algo}")
        raise UserError(f"ModelOpt quant_algo {algo or '(none)'} is not a format servectl plans", "supported: FP8, NVFP4")
    raise UserError(
        f"quantization method {method or '(none)'} is not one servectl plans",
        "supported: fp8, mxfp4, gptq (4/8-bit), awq (4-bit), compressed-tensors, modelopt (FP8/NVFP4), or unquantized",
    )
