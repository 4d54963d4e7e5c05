"""vLLM's KV-cache specs per layer and how it groups and sizes them. Exact (from vLLM's source), pure.

Per layer, the spec vLLM builds (`V/v1/kv_cache_interface.py`, `V/model_executor/layers/attention/attention.py:606-677`,
`mla_attention.py:1350-1379`):
- FullAttentionSpec: page = block x kv_heads x (head + head_v) x dtype bytes (KI:549-553); a request of L tokens
  pins cdiv(L, block) pages (KI:602-607);
- MLAAttentionSpec: one head of kv_lora_rank + qk_rope_head_dim, no V (fp8_ds_mla: 656 B per token), pinned like Full;
- SlidingWindowSpec: pins cdiv(min(W - 1 + in_flight, L), block) + 1 pages (KI:859-899);
- ChunkedLocalAttentionSpec: pins cdiv(min(C + in_flight, L), block) pages (KI:810-838);
- MambaSpec: page = the state (sum of its shapes x dtypes), padded to the attention page; pins 1 + spec pages
  ('none' mode) or 2 + spec ('align', prefix caching) (KI:1035-1083).
in_flight = max_concurrent_batches x max_num_batched_tokens (`V/config/vllm.py:577-598`: 2 batches with async
scheduling, which the CPU platform turns off); before 0.26 just max_num_batched_tokens.

Hybrid attention + Mamba models first grow the attention block until its page holds a Mamba state
(`V/platforms/interface.py:939-1120` `_align_hybrid_block_size`). Then `V/v1/core/kv_cache_utils.py`
`get_kv_cache_groups` (:2159-2253): with the hybrid allocator off, sliding / chunked layers become full attention
(:1690-1762); identical specs, or one type, make one group; otherwise pages are unified (a smaller attention page
gets a larger block when it divides, else is padded; Mamba pages are padded; :1292-1354) and layers are bucketed by
spec and split into groups of `min(bucket sizes)` layers (`max` when max < 1.5 x min), short groups padded
(:1362-1502). One block id costs the largest group's pages (:1520-1551); a request pins the sum over groups
(:1195-1227). `V/` is vLLM 0.32's `vllm/` package; version differences come from servectl.catalog.versions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from servectl.catalog.recipe import Architecture
from servectl.errors import UserError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "half": 2, "float": 4, "auto": 2}
FP8_DS_MLA_BYTES = 656  # bytes per token of the fp8_ds_mla layout (mla_attention.py:1365)
NVFP4_DS_MLA_BYTES = 352
UNBOUNDED = 2**31 - 1


class LayoutRefused(UserError):
    """vLLM cannot build this KV-cache layout (it raises at start-up)."""


@dataclass(frozen=True)
class Spec:
    """One layer's KV-cache spec, as vLLM's `KVCacheSpec` classes size it."""

    kind: str  # full_attention, mla, sliding_window, sliding_window_mla, chunked_local, mamba
    block_size: int
    per_token: int = 0  # attention: bytes per token per layer (unpadded)
    state_bytes: int = 0  # mamba: the state's bytes (unpadded)
    padded: int | None = None  # page_size_padded
    window: int | None = None  # sliding window / attention chunk (tokens)
    state_blocks: int = 1  # mamba: pages one request pins

    @property
    def is_attention(self) -> bool:
        return self.kind != "mamba"

    @property
    def real_page(self) -> int:
        return self.state_bytes if self.kind == "mamba" else self.block_size * self.per_token

    @property
    def page(self) -> int:
        return self.padded if self.padded is not None else self.real_page

    def pages(self, length: int, in_flight: int) -> int:
        """Pages one request of `length` tokens pins (`max_memory_usage_bytes` / page)."""
        if self.kind == "mamba":
            return self.state_blocks
        if self.kind in ("sliding_window", "sliding_window_mla"):
            assert self.window is not None
            return math.ceil(min(self.window - 1 + in_flight, length) / self.block_size) + 1
        if self.kind == "chunked_local":
            assert self.window is not None
            return math.ceil(min(self.window + in_flight, length) / self.block_size)
        return math.ceil(length / self.block_size)

    @property
    def grows(self) -> bool:
        """Whether its pages keep growing with the length (full attention and MLA)."""
        return self.kind in ("full_attention", "mla")

    def merge_key(self) -> tuple:
        """Specs vLLM merges into one bucket (same type and page; Full layers may differ only in a window field)."""
        return (
            self.kind,
            self.block_size,
            self.per_token,
            self.state_bytes,
            self.padded,
            None if self.kind in ("full_attention", "mla") else self.window,
            self.state_blocks,
        )


@dataclass(frozen=True)
class Group:
    """One KV-cache group: its layers (indices into the model's spec list) and their specs."""

    specs: tuple[Spec, ...]
    layers: tuple[int, ...]

    @property
    def spec(self) -> Spec:
        return self.specs[0]

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def page_bytes(self) -> int:
        return sum(s.page for s in self.specs)

    def pages(self, length: int, in_flight: int) -> int:
        return max(s.pages(length, in_flight) for s in self.specs)


@dataclass(frozen=True)
class Layout:
    """KV cache geometry as vLLM builds it: groups, block size, bytes per block, blocks per request."""

    groups: tuple[Group, ...]
    block_size: int  # the attention block size (after hybrid alignment)
    attn_bytes_per_token_layer: int  # the model-level attention spec's bytes per token per layer
    mamba_state_bytes: int  # one Mamba / GDN state, unpadded (0 without)
    page_bytes: int  # the unified page (the largest)
    block_bytes: int  # one block id: the largest group's pages (get_num_blocks divides by it)
    in_flight: int = 0  # tokens scheduled but not settled (sliding / chunked layers keep their blocks)
    mamba_blocks_per_request: int = 0  # pages one request pins per Mamba group
    ssm_dtype: str = "float32"
    hma: bool = True  # the hybrid KV-cache manager is on
    promoted: bool = False  # sliding / chunked layers allocated as full attention (manager off)
    padded_layers: int = 0  # empty slots of the groups (vLLM's "padding layers")
    mamba_align: bool = False  # Mamba 'align' mode (prefix caching): state blocks of block_size tokens

    @property
    def layers_per_group(self) -> int:
        return max(len(g.layers) for g in self.groups) if self.groups else 0

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def attn_groups(self) -> int:
        return sum(g.spec.is_attention for g in self.groups)

    @property
    def mamba_groups(self) -> int:
        return sum(not g.spec.is_attention for g in self.groups)

    @property
    def state_blocks(self) -> int:
        """Blocks one request pins whatever its length grows to (states, windows at their cap)."""
        return sum(g.pages(UNBOUNDED, self.in_flight) for g in self.groups if not g.spec.grows)

    def group_blocks(self, index: int, length: int) -> int:
        return self.groups[index].pages(length, self.in_flight)

    def blocks_per_request(self, length: int) -> int:
        return sum(g.pages(length, self.in_flight) for g in self.groups)

    def longest_request(self, blocks: int) -> int:
        """Longest length whose blocks_per_request fits in `blocks` (0 when not even one token; unbounded when the
        length never costs more than `blocks`)."""
        if blocks < self.blocks_per_request(1):
            return 0
        if self.blocks_per_request(UNBOUNDED) <= blocks:
            return UNBOUNDED
        lo, hi = 1, max(1, blocks) * max(g.spec.block_size for g in self.groups) + 1
        while lo < hi:  # largest L with blocks_per_request(L) <= blocks (monotone in L)
            mid = (lo + hi + 1) // 2
            if self.blocks_per_request(mid) <= blocks:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def with_block_size(self, block: int) -> "Layout":
        """The same layout with another attention block size (a measured one; calibration)."""

        def scaled(s: Spec) -> Spec:
            if not s.is_attention:
                return replace(s, padded=block * self.attn_bytes_per_token_layer if s.padded else None)
            return replace(s, block_size=block, padded=None)

        groups = tuple(Group(tuple(scaled(s) for s in g.specs), g.layers) for g in self.groups)
        page = block * self.attn_bytes_per_token_layer
        return replace(self, groups=groups, block_size=block, page_bytes=page, block_bytes=max(g.page_bytes for g in groups))

    def describe(self, max_model_len: int) -> list[dict]:
        """`plan --json` key `layout`: per group its spec kind, layers, page bytes, block size, blocks per request.
        A Mamba group's block spans max_model_len tokens without prefix caching (models/config.py MambaModelConfig)."""

        def block(g: Group) -> int:
            return max_model_len if (g.kind == "mamba" and not self.mamba_align) else g.spec.block_size

        return [
            {
                "kind": g.kind,
                "layers": list(g.layers),
                "page_bytes": g.spec.page,
                "block_size": block(g),
                "blocks_per_request": g.pages(max_model_len, self.in_flight),
                **({"sliding_window": g.spec.window} if "sliding" in g.kind else {}),
                **({"attention_chunk_size": g.spec.window} if g.kind == "chunked_local" else {}),
            }
            for g in self.groups
        ]


@dataclass(frozen=True)
class Platform:
    """What the target platform contributes to the layout."""

    cpu: bool = False
    block_size: int | None = None  # --block-size
    kernel_block: int = 16  # the attention backend's smallest kernel block (CPU_ATTN: MultipleOf(32); GPU: 16)
    mla_block: int | None = None  # a block size the MLA backend forces (CPU_MLA: 16)


def _mamba_state(arch: Architecture, tp: int, num_spec: int, model_bytes: int, ssm_bytes: int) -> int:
    """Bytes of one state: mamba_utils.py mamba2_state_shape / mamba1_state_shape / gated_delta_net_state_shape."""
    if arch.mamba is not None:
        m = arch.mamba
        if m.kind == "mamba1":  # conv (I/tp, k-1), temporal (I/tp, d_state); no speculative rows (jamba.py:472-485)
            inner = m.intermediate_size // tp
            return inner * (m.conv_kernel - 1) * model_bytes + inner * m.state_size * ssm_bytes
        groups = m.n_groups + (0 if m.n_groups % tp == 0 else tp - m.n_groups)  # extra_groups_for_head_shards
        conv_dim = (m.intermediate_size + 2 * groups * m.state_size) // tp
        conv = (m.conv_kernel - 1 + num_spec) * conv_dim * model_bytes
        return conv + (m.num_heads // tp) * m.head_dim * m.state_size * ssm_bytes
    lin = arch.linear
    assert lin is not None, "linear_attention layers need the `linear` geometry"
    conv_dim = (lin.key_head_dim * lin.num_key_heads * 2 + lin.value_head_dim * lin.num_value_heads) // tp
    conv = (lin.conv_kernel_dim - 1 + num_spec) * conv_dim * model_bytes
    return conv + (lin.num_value_heads // tp) * lin.value_head_dim * lin.key_head_dim * ssm_bytes


def kv_bytes_per_element(kv_cache_dtype: str, model_bytes: int) -> int:
    return 1 if kv_cache_dtype.startswith("fp8") else model_bytes


def layer_kinds(arch: Architecture, mtp: bool = False) -> list[str]:
    """Each KV layer vLLM registers, in order: a parallel hybrid layer registers its attention then its Mamba
    mixer; the MTP head adds one full-attention layer when speculating."""
    kinds: list[str] = []
    for k in arch.kinds():
        if k == "attention+mamba":
            kinds += ["full_attention", "mamba"]
        elif k == "linear_attention":
            kinds.append("mamba")
        elif k != "none":
            kinds.append(k)
    if mtp:
        kinds.append("full_attention")
    return kinds


def build(
    arch: Architecture,
    platform: Platform,
    *,
    tp: int = 1,
    kv_cache_dtype: str = "auto",
    dtype: str = "auto",
    prefix_caching: bool = False,
    num_spec: int = 0,
    ssm_dtype: str | None = None,
    in_flight: int = 0,
    hma: bool = True,
    group_ratio: float = 1.5,
    pad_uneven_pages: bool = True,
    disable_sliding_window: bool = False,
    mamba2_checkpoint: bool = False,
) -> Layout:
    """The layout vLLM builds for `arch` on `platform` with these settings. LayoutRefused where vLLM raises."""
    model_bytes = DTYPE_BYTES[dtype] if dtype != "auto" else DTYPE_BYTES[arch.dtype]
    kv_bytes = kv_bytes_per_element(kv_cache_dtype, model_bytes)
    mtp = bool(num_spec and arch.mtp_layers)
    kinds = layer_kinds(arch, mtp)
    if disable_sliding_window:
        kinds = ["full_attention" if k == "sliding_attention" else k for k in kinds]
    if arch.mla is not None:
        head, heads = arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim, 1  # MLA: one latent head (model.py:1650-1667)
        per_tok = {"fp8_ds_mla": FP8_DS_MLA_BYTES, "nvfp4_ds_mla": NVFP4_DS_MLA_BYTES}.get(kv_cache_dtype, head * kv_bytes)
    else:
        heads = max(1, arch.num_kv_heads // tp)
        per_tok = 2 * heads * arch.head_dim * kv_bytes  # K and V (head_size_v = head_size)
    block = (
        platform.block_size
        or (platform.mla_block if (arch.mla is not None and platform.mla_block) else None)
        or (128 if platform.cpu else 16)
    )
    if arch.mla is not None and platform.mla_block:
        block = platform.mla_block  # CPU_MLA takes 16 whatever --block-size says (platforms/cpu.py)
    has_state = "mamba" in kinds
    ssm = (
        ssm_dtype
        or (arch.mamba.ssm_dtype if arch.mamba and arch.mamba.ssm_dtype else None)
        or (arch.linear.ssm_dtype if arch.linear else None)
        or arch.dtype
    )
    state = _mamba_state(arch, tp, num_spec, model_bytes, DTYPE_BYTES[ssm]) if has_state else 0
    mamba_padded = None
    if has_state and any(k != "mamba" for k in kinds):
        # _align_hybrid_block_size: alignment = max(smallest kernel block, block_size), MLA at least 128
        align = max(platform.kernel_block, block)
        if arch.mla is not None:
            align = max(align, 128)
        block = max(block, align * math.ceil(state / (align * per_tok)))
        block = platform.kernel_block * math.ceil(block / platform.kernel_block)
        mamba_padded = block * per_tok if block * per_tok != state else None
    # MambaSpec.max_memory_usage_bytes: 'align' (prefix caching) 2 + spec (+ the Mamba2 prefill checkpoint, 0.32+),
    # 'none' 1 + spec (kv_cache_interface.py:1076-1083, mamba_mixer2.py get_kv_cache_spec)
    checkpoint = 1 if (mamba2_checkpoint and prefix_caching and arch.mamba is not None and arch.mamba.kind == "mamba2") else 0
    state_blocks = (2 + checkpoint if prefix_caching else 1) + num_spec
    specs: list[Spec] = []
    for k in kinds:
        if k == "mamba":
            specs.append(Spec("mamba", block, state_bytes=state, padded=mamba_padded, state_blocks=state_blocks))
        elif k == "sliding_attention":
            specs.append(Spec("sliding_window_mla" if arch.mla else "sliding_window", block, per_tok, window=arch.sliding_window))
        elif k == "chunked_attention":
            specs.append(Spec("chunked_local", block, per_tok, window=arch.attention_chunk_size))
        else:
            specs.append(Spec("mla" if arch.mla else "full_attention", block, per_tok))
    promoted = False
    if not hma:
        specs, promoted = _promote(specs)
    groups, padded_layers = _group(specs, group_ratio, pad_uneven_pages)
    page = max((g.spec.page for g in groups), default=0)
    return Layout(
        groups=tuple(groups),
        block_size=block,
        attn_bytes_per_token_layer=per_tok,
        mamba_state_bytes=state,
        page_bytes=page,
        block_bytes=max((g.page_bytes for g in groups), default=0),
        in_flight=in_flight,
        mamba_blocks_per_request=state_blocks if has_state else 0,
        ssm_dtype=ssm,
        hma=hma,
        promoted=promoted,
        padded_layers=padded_layers,
        mamba_align=prefix_caching,
    )


def _uniform(specs: list[Spec]) -> bool:
    """is_kv_cache_spec_uniform: every spec merges into one (Full specs may differ in their window field only)."""
    return len({s.merge_key() for s in specs}) == 1


def _uniform_type(specs: list[Spec]) -> bool:
    """UniformTypeKVCacheSpecs.is_uniform_type: one block size and one kind (same window / chunk / state)."""
    if len({s.block_size for s in specs}) > 1:
        return False
    kinds = {("full" if s.kind in ("full_attention", "mla") else s.kind) for s in specs}
    if len(kinds) > 1:
        return False
    kind = kinds.pop()
    if kind in ("sliding_window", "sliding_window_mla", "chunked_local"):
        return len({s.window for s in specs}) == 1
    if kind == "mamba":
        return len({(s.page, s.state_blocks) for s in specs}) == 1
    return True


def _promote(specs: list[Spec]) -> tuple[list[Spec], bool]:
    """_promote_local_kv_cache_specs: with a full-attention layer present, sliding and chunked layers are allocated as
    full attention (their compute stays local); Mamba layers cannot be, so vLLM fails to start."""
    if _uniform(specs) or _uniform_type(specs):
        return specs, False
    has_full = any(s.kind in ("full_attention", "mla") for s in specs)
    local = any(s.kind in ("sliding_window", "sliding_window_mla", "chunked_local") for s in specs)
    out = specs
    if has_full and local:
        full_block = next(s.block_size for s in specs if s.kind in ("full_attention", "mla"))
        out = [
            replace(s, kind="mla" if s.kind == "sliding_window_mla" else "full_attention", block_size=full_block, window=None)
            if s.kind in ("sliding_window", "sliding_window_mla", "chunked_local")
            else s
            for s in specs
        ]
    if not (_uniform(out) or _uniform_type(out)):
        raise LayoutRefused(
            "vLLM cannot run this model with the hybrid KV-cache manager off: its Mamba / linear-attention "
            "layers cannot be allocated as full attention (vLLM's check: 'Failed to promote local KV "
            "cache specs to one unified type')",
            "drop --disable-hybrid-kv-cache-manager (and the KV connector that turns it off)",
        )
    return out, out != specs


def _group(specs: list[Spec], ratio: float, pad_uneven: bool) -> tuple[list[Group], int]:
    """get_kv_cache_groups after the manager's promotion (kv_cache_utils.py:2159-2253)."""
    if not specs:
        return [], 0
    idx = tuple(range(len(specs)))
    if _uniform(specs) or _uniform_type(specs):
        return [Group(tuple(specs), idx)], 0
    specs = _unify_pages(specs, pad_uneven)
    buckets: dict[tuple, list[int]] = {}
    for i, s in enumerate(specs):  # insertion order: the first layer of each kind decides the group order
        buckets.setdefault(s.merge_key(), []).append(i)
    sizes = [len(v) for v in buckets.values()]
    lo, hi = min(sizes), max(sizes)
    size = hi if hi < lo * ratio else lo
    groups, padding = [], 0
    for layers in buckets.values():
        n = math.ceil(len(layers) / size)
        padding += n * size - len(layers)
        for i in range(n):
            members = tuple(layers[i::n])
            groups.append(Group(tuple(specs[j] for j in members), members))
    return groups, padding


def _unify_pages(specs: list[Spec], pad_uneven: bool) -> list[Spec]:
    """unify_kv_cache_spec_page_size (kv_cache_utils.py:1292-1354)."""
    top = max(s.page for s in specs)
    out = []
    for s in specs:
        if s.page == top:
            out.append(s)
        elif s.kind == "mamba":
            out.append(replace(s, padded=top))
        elif top % s.page == 0:
            out.append(replace(s, block_size=s.block_size * (top // s.page)))
        elif s.kind not in ("mla", "sliding_window_mla") and pad_uneven:
            out.append(replace(s, padded=top))
        else:
            raise LayoutRefused(
                f"vLLM cannot give this model's KV-cache layers one page size: a {s.page:,} B page does not "
                f"divide the {top:,} B one (vLLM's check: 'page size is not divisible by the maximum "
                "page size and cannot be padded')",
                "a different --kv-cache-dtype or --block-size may make the pages divide",
            )
    return out
