"""Predicted vs measured for every measured memory figure the planner has: the NVFP4 model card's RTX 5090 table
and the public start-up logs in tests/data/logs/public/replays.yaml, and a row per KV-cache layout family (captured starts
of the vLLM CPU build, tests/data/logs/families). Every row says whether its measured value was
used to fit a constant; only the unfitted rows count toward the errors printed at the end.
Targets: KV tokens within one block (1,056 tokens for Qwen3.5 on bf16 KV), total VRAM within 1 %.

    .venv/bin/python benchmarks/planner_accuracy.py
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from servectl.plan import planner as P
from servectl.vllmenv import args as va
from servectl.catalog.load import load_catalog
from servectl.catalog.base import validate
from servectl.catalog.recipe import Architecture
from servectl.plan.vllm_log import parse_text
from servectl.checkpoint.recipe import checkpoint_recipe
from servectl.checkpoint.source import LocalDirectory
from servectl.hardware.cpu_features import CpuFeatures

cat = load_catalog()
nvfp4 = cat.model("qwen3.5-35b-a3b-nvfp4")
g5090 = cat.gpu("rtx-5090")
V018 = "0.18.0"  # the card's image (vllm/vllm-openai:v0.18.0-cu130), VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
card = P.Settings(
    max_num_seqs=32,
    max_num_batched_tokens=2048,
    max_cudagraph_capture_size=32,
    limit_mm={"video": 0},
    max_model_len_auto=True,
    estimate_cudagraphs=True,
)
PUBLIC = Path(__file__).resolve().parents[1] / "tests" / "data" / "logs" / "public"


@dataclass
class Row:
    name: str
    predicted: float
    measured: float
    kind: str  # "tokens" (target: one block), "vram" (1 %), "mib" (reported, no target)
    fitted: str = ""  # which constant this measurement fitted ("" = unfitted: counts toward the error)
    tolerance: float = 0.0  # tokens: one block's worth of logged tokens
    note: str = ""

    @property
    def ok(self) -> str:
        err = abs(self.predicted - self.measured)
        if self.kind == "tokens":
            return "ok" if err <= self.tolerance else "MISS"
        if self.kind == "vram":
            return "ok" if err <= 0.01 * self.measured else "MISS"
        return ""


rows: list[Row] = []


def kv(util, s=card):
    return P.predict(nvfp4, g5090, replace(s, gpu_memory_utilization=util), vllm_version=V018).kv_cache_tokens_logged


for util, measured in ((0.885, 12_500), (0.905, 19_500), (0.956, 40_000)):
    tokens = kv(util)
    # 0.18's logged figure moves by 1,056 tokens every 4 blocks; the card's values are approximate ("~")
    rows.append(
        Row(
            f"card: KV tokens @ util {util}",
            tokens,
            measured,
            "tokens",
            tolerance=1056,
            fitted="MULTIMODAL_RESIDENT_GIB" if util == 0.956 else "",
        )
    )
for seqs, measured in ((1, 30_502), (8, 30_510), (32, 30_570)):
    s = replace(card, max_num_seqs=seqs, max_cudagraph_capture_size=seqs, gpu_memory_utilization=0.95)
    rows.append(
        Row(
            f"card: VRAM MiB @ max-num-seqs {seqs}",
            P.predict(nvfp4, g5090, s, vllm_version=V018).total_vram_mib,
            measured,
            "vram",
        )
    )


def graphs_and_sampler(seqs, cap):
    g = P.graphs_for(seqs, 2048, cap)
    return P.cudagraph_mib(nvfp4.architecture, g) + P.sampler_mib(nvfp4.architecture, seqs)


rows.append(Row("card: saving MiB, video encoder off", P.VIDEO_ENCODER_MIB, 170, "mib", fitted="VIDEO_ENCODER_MIB"))
rows.append(
    Row(
        "card: saving MiB, capture <= 32 vs defaults",
        graphs_and_sampler(256, None) - graphs_and_sampler(32, 32),
        4_400,
        "mib",
        fitted="CUDAGRAPH_MIB_PER_TOKEN",
        note="graphs + sampler warm-up, 256 -> 32 sequences",
    )
)
rows.append(
    Row(
        "card: saving MiB, mbt 2048 vs 4096",
        P.activation_mib(nvfp4.architecture, 4096) - P.activation_mib(nvfp4.architecture, 2048),
        350,
        "mib",
        note="card's baseline not stated",
    )
)
rows.append(
    Row(
        "card: KV tokens, estimate=1 minus estimate=0",
        kv(0.956) - kv(0.956, replace(card, estimate_cudagraphs=False)),
        1_500,
        "mib",
        note="the card's claim contradicts the source (the estimate is subtracted)",
    )
)

# public logs
manifest = yaml.safe_load((PUBLIC / "replays.yaml").read_text())
for entry in manifest["replays"]:
    log = parse_text((PUBLIC / entry["log"]).read_text())
    if "recipe" in entry:
        recipe = cat.model(entry["recipe"])
    else:
        recipe = replace(
            nvfp4,
            name=entry["architecture"],
            architecture=validate(Architecture, manifest["architectures"][entry["architecture"]]),
        )
    s = P.settings_from_flags(va.parse_args(entry["flags"]))
    name = Path(entry["log"]).stem
    if entry["replay"] == "memory":
        p = P.predict(
            recipe, g5090, replace(s, kv_cache_memory_bytes=int(log.available_kv_gib * 2**30)), vllm_version=entry["vllm_version"]
        )
        lay = P.layout_for(recipe, g5090, s, vllm_version=entry["vllm_version"])
        nxt = P.predict(
            recipe,
            g5090,
            replace(s, kv_cache_memory_bytes=(p.num_blocks + 1) * lay.block_bytes),
            vllm_version=entry["vllm_version"],
        )
        rows.append(
            Row(
                f"log: {name}",
                p.kv_cache_tokens_logged,
                log.kv_cache_tokens,
                "tokens",
                tolerance=abs(nxt.kv_cache_tokens_logged - p.kv_cache_tokens_logged),
                note=entry["source"],
            )
        )
    elif entry["replay"] == "budget":
        gpu = replace(cat.gpu("rtx-pro-6000-blackwell"), usable_memory_gib=log.total_memory_gib)
        gib = 1024.0
        corr = P.Correction(
            starts=1,
            weights_mib=log.weights_gib * gib,
            activation_mib=log.peak_activation_gib * gib,
            non_torch_mib=log.non_torch_gib * gib,
            cudagraph_mib=log.cudagraph_gib * gib,
            cudagraph_estimate_mib=log.cudagraph_estimate_gib * gib,
        )
        p = P.predict(recipe, gpu, s, vllm_version=entry["vllm_version"], correction=corr)
        rows.append(
            Row(
                f"log: {name}, KV MiB from vLLM's terms",
                p.budget["kv_available"],
                log.available_kv_gib * gib,
                "vram",
                note=entry["source"],
            )
        )
        model = P.predict(recipe, gpu, s, vllm_version=entry["vllm_version"])
        rows.append(
            Row(
                f"log: {name}, activation MiB (model)",
                model.budget["activation_peak"],
                log.peak_activation_gib * gib,
                "mib",
                note="the planner's activation model, unfitted",
            )
        )
# the CUDA-graph estimate of vLLM's default capture list on Qwen3.5-35B-A3B (PIECEWISE=51, FULL=35), PR #39559
gguf = parse_text((PUBLIC / "gpu-v0.19dev-qwen3.5-35b-a3b-gguf-262k.log").read_text())
rows.append(
    Row(
        "log: CUDA-graph estimate MiB, default list",
        P.cudagraph_mib(nvfp4.architecture, P.graphs_for(256, 8192, None)),
        gguf.cudagraph_estimate_gib * 1024,
        "mib",
        note="vllm PR #39559 (another run there logged 0.73 GiB)",
    )
)

# one row per KV-cache layout family: the captured starts of the vLLM 0.32 CPU build on tiny checkpoints of each
# family (tests/data/logs/families, with each checkpoint's config.json), planned from the config alone
FAMILIES = PUBLIC.parent / "families"
for log_path in sorted(FAMILIES.glob("*.log")):
    text = log_path.read_text()
    family, fam_flags = re.search(r"tiny-(\S+) with (.*?); ", text.splitlines()[0]).groups()
    host = CpuFeatures(
        avx512_bf16="avx512_bf16=True" in text.splitlines()[1], amx="amx=True" in text.splitlines()[1], source="the captured host"
    )
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(FAMILIES / f"{family}.config.json", Path(tmp) / "config.json")
        fam_recipe, derived = checkpoint_recipe(LocalDirectory(tmp), list(cat.gpus))
    fam_settings = P.settings_from_flags(va.parse_args(fam_flags.split()))
    fam_plan = P.predict(fam_recipe, cat.gpu("cpu"), fam_settings, vllm_version="0.32.0", host=host, check_target=False)
    fam_log = parse_text(text)
    block = (
        max(g["block_size"] for g in fam_plan.layout if g["kind"] != "mamba")
        if any(g["kind"] != "mamba" for g in fam_plan.layout)
        else fam_plan.block_size
    )
    rows.append(
        Row(
            f"cpu family: {log_path.stem} ({derived.family.name})",
            fam_plan.kv_cache_tokens_logged,
            fam_log.kv_cache_tokens,
            "tokens",
            tolerance=block,
            note=f"{' + '.join(sorted({g['kind'] for g in fam_plan.layout}))}; {fam_log.max_concurrency}x logged, "
            f"{fam_plan.max_concurrency:.2f}x planned",
        )
    )

print(f"{'figure':62} {'predicted':>11} {'measured':>10} {'error':>8}  {'fit':>4}  note")
for r in rows:
    err = r.predicted - r.measured
    pct = f"{100 * err / r.measured:+.1f}%" if r.measured else ""
    print(
        f"{r.name:62} {r.predicted:11,.0f} {r.measured:10,.0f} {pct:>8}  {'fit' if r.fitted else '':>4}  {r.ok:4} "
        f"{('fitted ' + r.fitted + '; ') if r.fitted else ''}{r.note}"
    )
unfitted = [r for r in rows if not r.fitted and r.kind in ("tokens", "vram")]
tok = [r for r in unfitted if r.kind == "tokens"]
vr = [r for r in unfitted if r.kind == "vram"]
print(
    f"\nunfitted rows only: KV tokens {sum(r.ok == 'ok' for r in tok)}/{len(tok)} within one block "
    f"(max error {max(abs(r.predicted - r.measured) for r in tok):,.0f} tokens); "
    f"VRAM/KV MiB {sum(r.ok == 'ok' for r in vr)}/{len(vr)} within 1 % "
    f"(max {max(abs(r.predicted - r.measured) / r.measured for r in vr):.2%})"
)
