"""The `speculative` check: how many draft tokens the server accepted, from vLLM's own counters.

vLLM exports vllm:spec_decode_num_draft_tokens_total and vllm:spec_decode_num_accepted_tokens_total
(vllm/v1/spec_decode/metrics.py SpecDecodingProm) only when it speculates, so a server without them is
skipped. Nothing accepted means the draft is broken (e.g. an MTP head without weights or a wrong
checkpoint) and speculation is pure overhead: the check fails.
"""

from __future__ import annotations

from servectl.verify.report import CheckResult

DRAFTS = "vllm:spec_decode_num_draft_tokens"
ACCEPTED = "vllm:spec_decode_num_accepted_tokens"


def counters(metrics_text: str) -> dict[str, float]:
    """Totals of the spec-decode counters over every engine (empty when the server does not speculate)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name in (DRAFTS, ACCEPTED, "vllm:spec_decode_num_drafts"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[family.name] = out.get(family.name, 0.0) + sample.value
    return out


def check(metrics_text: str) -> CheckResult:
    found = counters(metrics_text)
    if DRAFTS not in found:
        return CheckResult(name="speculative", status="skipped", detail="the server does not speculate (no spec_decode metrics)")
    drafted, accepted = found[DRAFTS], found.get(ACCEPTED, 0.0)
    figures = {
        "draft_tokens": int(drafted),
        "accepted_tokens": int(accepted),
        "drafts": int(found.get("vllm:spec_decode_num_drafts", 0)),
        "acceptance_rate": round(accepted / drafted, 4) if drafted else None,
    }
    if drafted and found.get("vllm:spec_decode_num_drafts"):
        figures["mean_acceptance_length"] = round(1 + accepted / found["vllm:spec_decode_num_drafts"], 3)
    if not drafted:
        return CheckResult(
            name="speculative",
            status="fail",
            figures=figures,
            detail="the server speculates but has drafted nothing yet, even after the checks' requests",
        )
    if not accepted:
        return CheckResult(
            name="speculative",
            status="fail",
            figures=figures,
            detail=f"none of {int(drafted)} draft tokens accepted: the draft only costs time "
            "(a checkpoint without its MTP weights?); serve with --speculative off",
        )
    return CheckResult(
        name="speculative",
        status="pass",
        figures=figures,
        detail=f"{accepted / drafted:.0%} of {int(drafted)} draft tokens accepted",
    )
