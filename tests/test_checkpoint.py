"""Weights from safetensors headers: the real tiny checkpoint, a hand-built file with an MTP head."""

import json
import struct

import pytest

from servectl.plan.checkpoint import weight_bytes
from servectl.errors import UserError


def write_safetensors(path, tensors):
    """A real safetensors file: u64 header length, JSON header, then the data bytes."""
    meta, offset, blobs = {}, 0, []
    for name, (dtype, shape, nbytes) in tensors.items():
        meta[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        blobs.append(b"\0" * nbytes)
        offset += nbytes
    head = json.dumps(meta).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_tiny_checkpoint_weights_equal_its_tensor_data(tiny_model):
    model = tiny_model
    loaded, skipped = weight_bytes(model)
    raw = (model / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    mtp = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k.startswith("mtp."))
    assert skipped == mtp > 0  # the MTP head: loaded only when speculating
    assert loaded + skipped == len(raw) - 8 - header_len


def test_mtp_head_is_not_counted(tmp_path):
    write_safetensors(
        tmp_path / "model-00001.safetensors",
        {
            "model.layers.0.mlp.weight": ("BF16", [64, 32], 64 * 32 * 2),
            "mtp.layers.0.weight": ("BF16", [16, 16], 16 * 16 * 2),
        },
    )
    write_safetensors(tmp_path / "model-00002.safetensors", {"lm_head.weight": ("F8_E4M3", [10, 8], 80)})
    assert weight_bytes(tmp_path) == (64 * 32 * 2 + 80, 16 * 16 * 2)


def test_plan_uses_the_checkpoint_weights(cli, tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"w": ("BF16", [1024, 1024], 2 * 2**20)})
    result = cli("plan", "tiny-cpu", "--gpu", "cpu", "--model-path", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["budget"]["weights"] == pytest.approx(2.0)
    assert any("safetensors headers" in n for n in data["notes"])


def test_directory_without_safetensors_is_bad_input(tmp_path):
    with pytest.raises(UserError):
        weight_bytes(tmp_path)
