"""`servectl plan --plot FILE`: the device's memory as a stacked bar, with the plan's figures, and the KV
cache's blocks: the groups and what one request of max-model-len pins. For `--nodes N`, one bar per node
(each rank of a node is alike). The segments are computed from the plan (`segments`, `node_segments`:
pure, tested without matplotlib); the drawing only lays them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servectl.observe import plot_style as style

# budget key -> label, bottom to top. The KV cache is drawn at its budget (kv_available): vLLM fills it with
# whole blocks, to within one block.
TERMS = (
    ("context", "CUDA context"),
    ("weights", "weights"),
    ("activation_peak", "activation peak"),
    ("non_torch", "non-torch"),
    ("calibration", "calibration"),
    ("cudagraphs", "CUDA graphs"),
    ("sampler_warmup", "sampler warm-up"),
    ("kv_cache", "KV cache"),
)


def _mib(v: float) -> str:
    return f"{v:,.1f} MiB"


def segments(plan: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(key, label, MiB) bottom to top for a single-node plan (`plan --json`), ending with the headroom
    (device total less everything; negative when the plan oversubscribes the device)."""
    b = plan["budget"]
    values = {**b, "kv_cache": b["kv_available"]}
    out = [(key, label, float(values.get(key, 0.0))) for key, label in TERMS if values.get(key, 0.0)]
    used = sum(v for _, _, v in out)
    head = "OS headroom" if "os_headroom" in b else "headroom"
    out.append(("headroom", head, b["device_total"] - used))
    return out


def node_segments(plan: dict[str, Any]) -> list[list[tuple[str, str, float]]]:
    """Per node of `plan --nodes N`: the same terms per rank, the node's own weights, the KV blocks the
    bottleneck lets it use, and the KV memory it leaves unused."""
    b = plan["budget"]
    out = []
    for node in plan["nodes"]["per_node"]:
        values = {
            **b,
            "weights": node["weights_mib_per_rank"],
            "kv_cache": node["kv_used_mib_per_rank"],
            "kv_unused": node["kv_unused_mib_per_rank"],
        }
        segs = [(key, label, float(values.get(key, 0.0))) for key, label in TERMS if values.get(key, 0.0)]
        if values["kv_unused"] > 0:
            segs.append(("kv_unused", "KV memory left unused", values["kv_unused"]))
        segs.append(("headroom", "headroom", b["device_total"] - sum(v for _, _, v in segs)))
        out.append(segs)
    return out


def kv_blocks(plan: dict[str, Any]) -> list[tuple[str, str, int]]:
    """The KV cache's block pool: (key, label, blocks) for the null block, what one request of
    max_model_len pins per group kind, and the rest."""
    lay = plan["kv_layout"]
    total = plan["nodes"]["num_blocks"] if plan.get("nodes") else plan["num_blocks"]
    out = [("null_block", "null block", lay["null_blocks"])]
    for g in lay["groups"]:
        n = g["count"] * g["blocks_per_request"]
        what = (
            f"{g['count']} attention group{'s' if g['count'] != 1 else ''} x {g['blocks_per_request']:,} blocks"
            if g["kind"] == "attention"
            else f"{g['count']} mamba group{'s' if g['count'] != 1 else ''} x {g['blocks_per_request']} state block"
            f"{'s' if g['blocks_per_request'] != 1 else ''}"
        )
        out.append((g["kind"], f"one request: {what}", n))
    rest = total - sum(n for _, _, n in out)
    out.append(("free", "other requests", max(rest, 0)))
    return out


def _bar(ax, x: float, segs: list[tuple[str, str, float]], total: float, legend: dict[str, Any]) -> None:
    bottom = 0.0
    for key, label, mib in segs:
        if mib <= 0:
            continue
        hatch = "//" if key in ("kv_unused", "headroom") else None
        bar = ax.bar(
            x,
            mib,
            bottom=bottom,
            width=0.6,
            color=style.COLORS[key],
            edgecolor="white" if not hatch else "#bbbbbb",
            hatch=hatch,
            linewidth=0.6,
        )
        legend.setdefault(key, (bar, label))
        if mib >= 0.045 * total:
            ax.text(x, bottom + mib / 2, f"{label}\n{_mib(mib)}", ha="center", va="center", fontsize=7.5)
        bottom += mib
    over = -segs[-1][2] if segs and segs[-1][0] == "headroom" and segs[-1][2] < 0 else 0
    if over:
        ax.text(x, bottom, f"over the device by {_mib(over)}", ha="center", va="bottom", color=style.COLORS["over"], fontsize=8)


def draw(plan: dict[str, Any], path: Path) -> None:
    """Write the plan's picture to path (.svg or .png)."""
    style.plot_format(path)
    plt = style.require_matplotlib()
    nodes = plan.get("nodes")
    bars = node_segments(plan) if nodes else [segments(plan)]
    total = plan["budget"]["device_total"]
    fig, (mem, kv) = plt.subplots(1, 2, figsize=(13, 6.2), gridspec_kw={"width_ratios": [max(1.2, 0.9 * len(bars)), 2.2]})
    legend: dict[str, Any] = {}
    for i, segs in enumerate(bars):
        _bar(mem, i, segs, total, legend)
    mem.axhline(total, color="#444444", linewidth=0.8, linestyle="--")
    device = "GPU" if plan.get("device") == "GPU" else "host memory"
    mem.text(len(bars) - 0.5, total, f"{device}: {_mib(total)}", ha="right", va="bottom", fontsize=8)
    mem.set_xticks(
        range(len(bars)),
        [f"node {n['node']}\n(each of {n['ranks']} ranks)" for n in nodes["per_node"]]
        if nodes
        else [f"{plan['profile']}\n(per GPU)" if plan.get("device") == "GPU" else plan["profile"]],
    )
    mem.set_xlim(-0.6, len(bars) - 0.4)
    mem.set_ylabel("MiB")
    mem.set_title(f"memory: {_mib(plan['total_vram_mib'])} in use once started")
    handles = [legend[k][0] for k in legend]
    labels = [f"{legend[k][1]}: " + " / ".join(_mib(v) for segs in bars for kk, _, v in segs if kk == k) for k in legend]
    mem.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    blocks = kv_blocks(plan)
    left = 0
    pool = sum(n for _, _, n in blocks)
    for key, label, n in blocks:
        if n <= 0:
            continue
        kv.barh(
            0,
            n,
            left=left,
            color=style.COLORS[key],
            edgecolor="white",
            height=1.0,
            label=f"{label}: {n:,} block{'s' if n != 1 else ''}",
        )
        left += n
    lay = plan["kv_layout"]
    per_req = lay["blocks_per_request"]
    num_blocks = nodes["num_blocks"] if nodes else plan["num_blocks"]
    fits = nodes["fits"] if nodes else plan["fits"]
    kv.set_xlim(0, max(pool, per_req + 1))
    kv.set_yticks([])
    kv.set_xlabel("KV cache blocks")
    kv.set_title(f"KV cache: {num_blocks:,} blocks of {lay['block_size']:,} tokens ({lay['block_bytes']:,} B each)")
    groups = " + ".join(f"{g['count']} {g['kind']}" for g in lay["groups"])
    lines = [
        f"groups: {groups}, {lay['layers_per_group']} layers per group, page {lay['page_bytes']:,} B",
        f"one request of max-model-len {plan['max_model_len']:,} tokens pins {per_req:,} blocks",
        f"max concurrency at max-model-len: {plan['max_concurrency']:.2f}x",
        f"tokens one request can hold: {(nodes or plan)['kv_cache_tokens_real']:,}; vLLM logs {plan['kv_cache_tokens_logged']:,}",
    ]
    if not fits:
        lines.append("one request of max-model-len does not fit (see the plan's warnings)")
    kv.text(0.0, 0.40, "\n".join(lines), va="top", ha="left", fontsize=9, transform=kv.transAxes)
    kv.set_ylim(-4.5, 2.6)
    kv.legend(loc="upper left", ncol=2)
    fig.suptitle(
        f"{plan['recipe']} on {plan['profile']}, vLLM {plan['vllm_version']}"
        + (
            f", {nodes['count']} nodes (tensor parallel {nodes['tensor_parallel_size']} x pipeline parallel "
            f"{nodes['pipeline_parallel_size']}; node {nodes['bottleneck']['node']} sets the KV blocks)"
            if nodes
            else ""
        )
    )
    fig.tight_layout()
    style.save(fig, path)
