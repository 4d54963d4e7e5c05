"""Generate the tiny-cpu checkpoint. Run by the vLLM environment's interpreter (it has torch,
transformers and tokenizers); imports nothing from servectl so it runs there as a plain script.

    python _tinymodel_gen.py OUT_DIR {scripted|random|scripted-pp|family:NAME} [SEED]

Architecture: the hybrid layout of the Qwen3.5/3.6 targets, scaled down (Qwen3NextForCausalLM:
Gated DeltaNet linear attention x3 + gated full attention x1, MoE 4 experts / 2 per token).

The scripted variant makes greedy decoding follow a fixed script, a bigram chain: every block's
output projection is zeroed, so the residual stream at each position is the token's own
embedding; the LM head then maps each script token's (normalised) embedding to its successor.
Each script piece is one added token and appears once, so every token has one successor. The
chat template chooses the branch through the last prompt token:
  thinking (default)     <think>      -> reasoning ... </think> -> answer ... <|im_end|>
  enable_thinking=false  </think>     -> answer ... <|im_end|>
  tools offered          <think></think><|tool_turn|> -> <tool_call>{json}</tool_call> <|im_end|> (hermes)
  after a tool result    <think></think><|after_tool|> -> summary ... <|im_end|>
(An empty think block before the markers tells the qwen3 reasoning parser the reply is content.)
The random variant keeps random weights everywhere: it talks gibberish (the detector's test).

Both carry a multi-token-prediction head (`mtp.*`, add_mtp_head) that vLLM serves as a speculative
draft with --speculative-config '{"method": "mtp", ...}': the scripted head drafts the script's next
tokens (vLLM accepts nearly every draft), the random head drafts noise (nearly all rejected).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

VOCAB_SIZE = 4096
LAYER_TYPES = {
    "scripted": ["linear_attention"] * 3 + ["full_attention"],
    "random": ["linear_attention"] * 3 + ["full_attention"],
    "scripted-pp": ["linear_attention", "full_attention"] * 2,
}
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|tool_turn|>", "<|after_tool|>"]
MARKUP = ["<think>", "</think>", "<tool_call>", "</tool_call>"]  # non-special: parsers read them from the text
REASONING = ["The user asked", " who I am.", " I will answer briefly."]
ANSWER = ["I am a tiny test model", " served by vLLM", " through servectl.", " Every reply", " follows one short script."]
TOOL_CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
AFTER_TOOL = ["The weather tool", " reports sunny skies", " in Paris today."]

CHAINS = [
    ["<think>", *REASONING, "</think>", *ANSWER, "<|im_end|>"],
    ["<|tool_turn|>", "<tool_call>", TOOL_CALL, "</tool_call>", "<|im_end|>"],
    ["<|after_tool|>", *AFTER_TOOL, "<|im_end|>"],
]

# Newlines are written as {{ nl }} expressions: transformers renders with trim_blocks/lstrip_blocks,
# which would eat literal newlines next to block tags.
CHAT_TEMPLATE = (
    "{%- set nl = '\\n' -%}"
    "{%- macro text(c) -%}{%- if c is string -%}{{ c }}{%- elif c -%}{%- for p in c -%}"
    "{%- if p.type == 'text' -%}{{ p.text }}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
    "{%- if tools -%}<|im_start|>system{{ nl }}# Tools{{ nl }}"
    "{%- for t in tools -%}{{ t | tojson }}{{ nl }}{%- endfor -%}<|im_end|>{{ nl }}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'tool' -%}<|im_start|>user{{ nl }}<tool_response>{{ text(m.content) }}</tool_response><|im_end|>{{ nl }}"
    "{%- elif m.role == 'assistant' and m.tool_calls -%}<|im_start|>assistant{{ nl }}"
    '{%- for tc in m.tool_calls -%}<tool_call>{"name": {{ tc.function.name | tojson }}, "arguments": '
    "{%- if tc.function.arguments is string %} {{ tc.function.arguments }}{%- else %} {{ tc.function.arguments | tojson }}{%- endif -%}"
    "}</tool_call>{%- endfor -%}<|im_end|>{{ nl }}"
    "{%- else -%}<|im_start|>{{ m.role }}{{ nl }}{{ text(m.content) }}<|im_end|>{{ nl }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ nl }}"
    "{%- if messages[-1].role == 'tool' -%}<think></think><|after_tool|>"
    "{%- elif tools -%}<think></think><|tool_turn|>"
    "{%- elif enable_thinking is defined and enable_thinking is false -%}<think></think>"
    "{%- else -%}<think>{%- endif -%}"
    "{%- endif -%}"
)

CORPUS_WORDS = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which do their time "
    "if will way about many then them write would like so these her long make thing see him two has look more day "
    "could go come did number sound no most people my over know water than call first who may down side been now "
    "find any new work part take get place made live where after back little only round man year came show every "
    "good me give our under name very through just form sentence great think say help low line differ turn cause "
    "much mean before move right boy old too same tell does set three want air well also play small end put home "
    "read hand port large spell add even land here must big high such follow act why ask men change went light "
    "weather city sunny model tiny test answer question hello world Paris tool served script reply"
).split()


def build_tokenizer(out: Path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    pieces = [p for chain in CHAINS for p in chain if p not in SPECIAL and p not in MARKUP]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = []
    for i in range(3000):  # deterministic pseudo-sentences: enough merges to fill the vocabulary
        words = [CORPUS_WORDS[(i * 31 + j * 17 + (i // 7) * j) % len(CORPUS_WORDS)] for j in range(14)]
        corpus.append(" ".join(words) + (". " if i % 3 else "? ") + str(i))
    n_added = len(SPECIAL) + len(MARKUP) + len(pieces)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - n_added,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP + pieces])
    reserved = VOCAB_SIZE - tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(f"<|reserved_{i}|>", special=True) for i in range(reserved)])
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, fast, variant: str, seed: int) -> None:
    import torch
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3NextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        linear_num_key_heads=2,
        linear_num_value_heads=2,
        linear_key_head_dim=64,
        linear_value_head_dim=64,
        linear_conv_kernel_dim=4,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
        max_position_embeddings=4096,
        layer_types=LAYER_TYPES[variant],
        torch_dtype="bfloat16",
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = Qwen3NextForCausalLM(cfg)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.normal_(0.0, 1.0)
        if variant == "random":
            model.lm_head.weight.normal_(0.0, 1.0)
        else:
            for name, p in model.named_parameters():
                if any(k in name for k in ("o_proj", "out_proj", "down_proj")):
                    p.zero_()  # no block writes to the residual stream: position t carries embed[t]
            head = model.lm_head.weight
            head.normal_(0.0, 0.01)
            succ: dict[int, int] = {}
            ids = {t: fast.convert_tokens_to_ids(t) for chain in CHAINS for t in chain}
            for chain in CHAINS:
                for a, b in zip(chain, chain[1:]):
                    assert succ.setdefault(ids[a], ids[b]) == ids[b], f"{a!r} has two successors"
            preds: dict[int, list[int]] = {}
            for src, dst in succ.items():
                preds.setdefault(dst, []).append(src)
            normed = model.model.norm(emb)  # what the LM head sees at a position holding that token
            for dst, sources in preds.items():
                head[dst] = sum(3.0 * normed[s] / normed[s].norm() for s in sources)
            logits = model.lm_head(normed[list(succ)])
            got = logits.argmax(-1).tolist()
            assert got == list(succ.values()), "bigram chain does not decode greedily"
    model.to(torch.bfloat16).save_pretrained(out)
    add_mtp_head(out, model, variant, seed)
    (out / "generation_config.json").write_text(
        json.dumps(
            {
                "eos_token_id": cfg.eos_token_id,
                "pad_token_id": cfg.pad_token_id,
                "max_new_tokens": 256,
            },
            indent=2,
        )
    )


MTP_LAYER_TEMPLATE = "model.layers.3."  # the full-attention layer: the MTP block is one such layer


def add_mtp_head(out: Path, model, variant: str, seed: int) -> None:
    """Append an MTP head (one Qwen3-Next full-attention block) to the checkpoint, named as in the
    real Qwen3-Next checkpoints (mtp.fc, mtp.pre_fc_norm_{embedding,hidden}, mtp.layers.0.*, mtp.norm).

    vLLM's Qwen3NextMTP (vllm/model_executor/models/qwen3_next_mtp.py) draws token t+2 from
    fc(cat(norm(embed(x[t+1])), norm(h[t]))) -> decoder layer -> norm -> lm_head (the target's).
    Scripted: fc passes the embedding half through and the block writes nothing to the residual,
    so the head's output is norm(embed(x[t+1])), which the shared LM head maps to x[t+1]'s script
    successor, i.e. the script's next-but-one token after h[t]'s position. Random: random weights.
    """
    import torch
    from safetensors.torch import load_file, save_file

    path = out / "model.safetensors"
    tensors = load_file(path)
    hidden = model.config.hidden_size
    gen = torch.Generator().manual_seed(seed + 1)

    def rand(shape):
        return (torch.randn(shape, generator=gen) * 0.5).to(torch.bfloat16)

    mtp: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not name.startswith(MTP_LAYER_TEMPLATE):
            continue
        sub = name[len(MTP_LAYER_TEMPLATE) :]
        if "norm" in sub:
            value = torch.zeros_like(t)  # Gemma-style RMSNorm: weight 0 scales by 1
        elif variant == "scripted" and any(k in sub for k in ("o_proj", "down_proj")):
            value = torch.zeros_like(t)  # the block adds nothing to the residual stream
        else:
            value = rand(t.shape)
        mtp["mtp.layers.0." + sub] = value
    for norm in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        mtp[f"mtp.{norm}.weight"] = torch.zeros(hidden, dtype=torch.bfloat16)
    if variant == "scripted":
        fc = torch.zeros(hidden, 2 * hidden)
        fc[:, :hidden] = torch.eye(hidden)  # cat order is [embedding, hidden state]
        mtp["mtp.fc.weight"] = fc.to(torch.bfloat16)
        mtp["mtp.norm.weight"] = tensors["model.norm.weight"].clone()
        with torch.no_grad():  # the head's greedy draft after any token is the main model's next token
            norm, head = model.model.norm.float(), model.lm_head.float()  # head norms have weight 0 too
            emb = model.model.embed_tokens.weight.float()
            fc = mtp["mtp.fc.weight"].float()
            drafted = head(norm(torch.cat([norm(emb), norm(emb)], -1) @ fc.T)).argmax(-1)
            assert torch.equal(drafted, head(norm(emb)).argmax(-1)), "the MTP head does not draft the script"
    else:
        mtp["mtp.fc.weight"] = rand((hidden, 2 * hidden))
    save_file({**tensors, **mtp}, path, metadata={"format": "pt"})
    path.chmod(0o644)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(mtp_num_hidden_layers=1, mtp_use_dedicated_embeddings=False)  # as the Qwen3.5/3.6 configs spell it
    (out / "config.json").write_text(json.dumps(cfg, indent=2))


# Tiny random checkpoints of other families (`family:NAME`): transformers' own config class and from_config,
# random weights, the tokenizer above. Shapes stay inside what vLLM's CPU build runs (CPU_ATTN head sizes 32..256,
# CPU_MLA's 512 + 64 latent) and vary across entries (head sizes, windows, layer patterns, state shapes), so one
# family's rule is checked on more than one shape. Each entry: (transformers config class, model class, kwargs).
_BASE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
)
FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_BASE, num_hidden_layers=2, head_dim=32)),
    "llama-hd96": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(_BASE, hidden_size=192, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=3),
    ),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_BASE, num_hidden_layers=2, head_dim=64)),
    "qwen3-moe": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=2,
            num_key_value_heads=1,
            head_dim=32,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=64,
            decoder_sparse_step=1,
        ),
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_BASE, num_hidden_layers=2, head_dim=32, sliding_window=200)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(_BASE, num_hidden_layers=4, head_dim=64, sliding_window=256, query_pre_attn_scalar=64, tie_word_embeddings=True),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        dict(_BASE, num_hidden_layers=6, num_key_value_heads=1, head_dim=32, sliding_window=512, query_pre_attn_scalar=32),
    ),
    "gemma3-pattern3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=7,
            head_dim=64,
            sliding_window=384,
            query_pre_attn_scalar=64,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2 + ["sliding_attention"],
        ),
    ),
    "gpt-oss": (
        "GptOssConfig",
        "GptOssForCausalLM",
        dict(_BASE, num_hidden_layers=4, head_dim=64, sliding_window=128, num_local_experts=4, num_experts_per_tok=2),
    ),
    "deepseek-v3": (
        "DeepseekV3Config",
        "DeepseekV3ForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            kv_lora_rank=512,
            q_lora_rank=None,
            qk_rope_head_dim=64,
            qk_nope_head_dim=32,
            v_head_dim=64,
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=64,
            first_k_dense_replace=2,
            n_group=1,
            topk_group=1,
            n_shared_experts=1,
        ),
    ),
    "glm4-moe": (
        "Glm4MoeConfig",
        "Glm4MoeForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=2,
            head_dim=64,
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=64,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
        ),
    ),
    "nemotron-h": (
        "NemotronHConfig",
        "NemotronHForCausalLM",
        dict(
            _BASE,
            head_dim=32,
            layers_block_type=["mamba", "attention", "mlp", "mamba", "attention", "mlp"],
            mamba_num_heads=4,
            mamba_head_dim=32,
            n_groups=2,
            ssm_state_size=32,
            conv_kernel=4,
            use_mamba_kernels=False,
        ),
    ),
    "granite-h": (
        "GraniteMoeHybridConfig",
        "GraniteMoeHybridForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=4,
            layer_types=["mamba", "attention", "mamba", "mamba"],
            mamba_n_heads=4,
            mamba_n_groups=1,
            mamba_d_state=32,
            mamba_d_conv=4,
            mamba_expand=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            shared_intermediate_size=64,
        ),
    ),
    "falcon-h1": (
        "FalconH1Config",
        "FalconH1ForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=2,
            mamba_d_ssm=256,
            mamba_n_heads=8,
            mamba_d_head=32,
            mamba_n_groups=1,
            mamba_d_state=16,
            mamba_d_conv=4,
        ),
    ),
    "jamba": (
        "JambaConfig",
        "JambaForCausalLM",
        dict(
            _BASE,
            num_hidden_layers=4,
            attn_layer_period=2,
            attn_layer_offset=1,
            expert_layer_period=2,
            expert_layer_offset=1,
            num_experts=2,
            num_experts_per_tok=1,
            mamba_d_state=16,
            mamba_d_conv=4,
            mamba_expand=2,
            use_mamba_kernels=False,
        ),
    ),
}


def build_family(out: Path, fast, name: str, seed: int) -> None:
    import torch
    import transformers

    config_cls, model_cls, kwargs = FAMILIES[name]
    torch.manual_seed(seed)
    cfg = getattr(transformers, config_cls)(
        **kwargs,
        dtype="bfloat16",
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
    )
    model = getattr(transformers, model_cls)(cfg)
    model.to(torch.bfloat16).save_pretrained(out)
    (out / "generation_config.json").write_text(
        json.dumps({"eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id, "max_new_tokens": 64}, indent=2)
    )


def main(argv: list[str]) -> int:
    if argv[1] == "--batch":  # --batch JSON: [[OUT_DIR, VARIANT], ...], one interpreter for many checkpoints
        for out, variant in json.loads(argv[2]):
            code = main([argv[0], out, variant])
            if code:
                return code
        return 0
    out, variant = Path(argv[1]), argv[2]
    seed = int(argv[3]) if len(argv) > 3 else 0
    family = variant.removeprefix("family:") if variant.startswith("family:") else None
    if (family is None and variant not in LAYER_TYPES) or (family is not None and family not in FAMILIES):
        print(f"unknown variant {variant!r} (families: {', '.join(FAMILIES)})", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    fast = build_tokenizer(out)
    if family is not None:
        build_family(out, fast, family, seed)
        (out / "servectl-tiny.json").write_text(json.dumps({"variant": variant, "seed": seed}, indent=2))
        print(out)
        return 0
    build_model(out, fast, variant, seed)
    (out / "servectl-tiny.json").write_text(json.dumps({"variant": variant, "seed": seed, "script": CHAINS}, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
