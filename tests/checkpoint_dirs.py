"""Checkpoint directories made from the real config.json files in tests/data/configs: the config plus one
safetensors file that declares the weights the architecture implies (servectl reads headers only, so the tensor
bytes are never written). `servectl plan DIR` / `models show DIR` need a checkpoint vLLM could load: config.json
and safetensors weights."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

CONFIGS = Path(__file__).parent / "data" / "configs"


def header_only_safetensors(path: Path, nbytes: int, dtype: str = "BF16") -> None:
    """A safetensors file whose header lists one tensor of `nbytes` (the data itself is absent)."""
    width = {"BF16": 2, "F16": 2, "F32": 4, "U8": 1}[dtype]
    n = max(1, nbytes // width)
    header = json.dumps({"model.embed_tokens.weight": {"dtype": dtype, "shape": [n], "data_offsets": [0, n * width]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def checkpoint_dir(name: str, root: Path, **changes) -> Path:
    """tests/data/configs/NAME as a loadable-looking checkpoint under root (config keys replaced by `changes`)."""
    from servectl.checkpoint.recipe import estimated_weight_bytes
    from servectl.checkpoint.derive import derive
    from servectl.checkpoint.source import LocalDirectory

    out = root / name
    shutil.copytree(CONFIGS / name, out)
    if changes:
        cfg = json.loads((out / "config.json").read_text())
        cfg.update(changes)
        (out / "config.json").write_text(json.dumps(cfg))
    d = derive(LocalDirectory(out), read_weights=False)
    inter = d.figures.get("intermediate_size")
    header_only_safetensors(
        out / "model.safetensors", estimated_weight_bytes(d.architecture, d.quantization, inter.value if inter else None)
    )
    return out
