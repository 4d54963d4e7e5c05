"""Scripted tiny checkpoints of other model families, for `servectl up DIR` + `servectl check` on the CPU build.
Run by the vLLM environment's interpreter; imports nothing from servectl (it loads servectl/vllmenv/_tinymodel_gen.py
by path for the tokenizer, the chat template and the script). The tests make them (tests/tiny_checkpoints.py).

    python tiny_family_gen.py OUT_DIR FAMILY [SEED]      # FAMILY: a key of FAMILIES
    python tiny_family_gen.py --script IN_DIR OUT_DIR    # script a copy of any tiny checkpoint made with that tokenizer

The same trick as the tiny-cpu model, for any architecture with a residual stream, a final norm and an untied
LM head: every block's output projection is zeroed (o_proj, down_proj, out_proj), so the last hidden state at a
position is a function of that position's token alone; the LM head then maps each script token's hidden state
(read from the model's own forward pass, after the final norm) to its successor. Greedy decoding follows the
script through the chat template's branches: reasoning in <think>, a hermes-style <tool_call>, a summary after the
tool result. The checkpoint keeps the architecture's own config and weights layout, so vLLM serves it with the
family's own model class.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

_BASE = Path(__file__).resolve().parents[1] / "servectl" / "vllmenv" / "_tinymodel_gen.py"
_spec = importlib.util.spec_from_file_location("servectl_tinymodel_gen", _BASE)
assert _spec is not None and _spec.loader is not None
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

_COMMON = dict(
    vocab_size=base.VOCAB_SIZE,
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
)
# Families vLLM's CPU build runs, on full-attention layouts: (transformers config class, model class, kwargs).
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_COMMON, num_hidden_layers=2, head_dim=32)),
    "qwen3-moe": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        dict(
            _COMMON,
            num_hidden_layers=2,
            head_dim=32,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=64,
            decoder_sparse_step=1,
        ),
    ),
    "granite": (
        "GraniteConfig",
        "GraniteForCausalLM",
        dict(
            _COMMON,
            num_hidden_layers=2,
            embedding_multiplier=12.0,
            residual_multiplier=0.22,
            logits_scaling=8.0,
            attention_multiplier=0.015625,
        ),
    ),
}
ZEROED = ("o_proj", "down_proj", "out_proj", "dense_4h_to_h")


def script(model, fast) -> None:
    """Zero every block's write to the residual stream and point the LM head along the bigram chain."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ZEROED):
                p.zero_()
        emb = model.get_input_embeddings().weight
        emb.normal_(0.0, 1.0)
        head = model.get_output_embeddings().weight
        head.normal_(0.0, 0.01)
        ids = {t: fast.convert_tokens_to_ids(t) for chain in base.CHAINS for t in chain}
        succ: dict[int, int] = {}
        for chain in base.CHAINS:
            for a, b in zip(chain, chain[1:]):
                assert succ.setdefault(ids[a], ids[b]) == ids[b], f"{a!r} has two successors"
        tokens = sorted(set(succ))

        def hidden(token_ids):  # the final hidden state (after the final norm) of each token alone
            out = model(input_ids=torch.tensor([[t] for t in token_ids]), output_hidden_states=True)
            return out.hidden_states[-1][:, -1, :].float()

        h = hidden(tokens)
        preds: dict[int, list[int]] = {}
        for a, b in succ.items():
            preds.setdefault(b, []).append(a)
        row = {t: i for i, t in enumerate(tokens)}
        for b, sources in preds.items():
            head[b] = sum(3.0 * h[row[a]] / h[row[a]].norm() for a in sources).to(head.dtype)
        got = model(input_ids=torch.tensor([[t] for t in tokens])).logits[:, -1, :].argmax(-1).tolist()
        assert got == [succ[t] for t in tokens], "the bigram chain does not decode greedily"


def build(out: Path, family: str, seed: int) -> None:
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    fast = base.build_tokenizer(out)
    config_cls, model_cls, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    cfg = getattr(transformers, config_cls)(
        **kwargs,
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
    )
    model = getattr(transformers, model_cls)(cfg).float().eval()
    script(model, fast)
    model.to(torch.bfloat16).save_pretrained(out)
    (out / "generation_config.json").write_text(
        json.dumps({"eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "max_new_tokens": 256}, indent=2)
    )
    (out / "servectl-tiny.json").write_text(json.dumps({"family": family, "seed": seed, "script": base.CHAINS}, indent=2))


def script_copy(src: Path, out: Path) -> None:
    """A scripted copy of a tiny checkpoint that uses the tiny tokenizer (same vocabulary and chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    shutil.copytree(src, out)
    fast = PreTrainedTokenizerFast.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    if model.config.tie_word_embeddings:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.clone())
    script(model, fast)
    model.to(torch.bfloat16).save_pretrained(out)
    meta = {"scripted_from": str(src), "script": base.CHAINS}
    (out / "servectl-tiny.json").write_text(json.dumps(meta, indent=2))


def main(argv: list[str]) -> int:
    if argv[1] == "--script":
        script_copy(Path(argv[2]), Path(argv[3]))
        print(argv[3])
        return 0
    out, family = Path(argv[1]), argv[2]
    if family not in FAMILIES:
        print(f"unknown family {family!r} (families: {', '.join(FAMILIES)})", file=sys.stderr)
        return 2
    build(out, family, int(argv[3]) if len(argv) > 3 else 0)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
