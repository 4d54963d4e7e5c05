"""Real pieces for hub tests: tiny checkpoints written in the real file formats, a Hugging Face cache laid out as
huggingface_hub lays it out (models--org--name/{blobs,snapshots/<commit>,refs/main}), and a small HTTP server that
speaks the parts of the Hub's protocol huggingface_hub uses (resolve HEAD/GET with ranges, the tree API, the
error headers), started on a port the OS picks. Nothing here replaces huggingface_hub: it runs for real."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]], fill: bytes = b"\0", data: bool = True) -> bytes:
    """A safetensors file: u64 header length, JSON header, then each tensor's bytes (data=False: the header alone,
    as the first bytes of a file too large to write here; servectl only ever reads headers)."""
    sizes = {"BF16": 2, "F16": 2, "F32": 4, "U8": 1, "I32": 4, "F8_E4M3": 1, "I8": 1}
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + (fill * offset if data else b"")


QWEN3_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>\n"
    "For each function call, return a json object within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n{%- endif %}'
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{%- endif %}{%- endif %}"
)


def qwen3_config(**over) -> dict:
    """Qwen/Qwen3-0.6B's config.json shape (public), shrunk."""
    cfg = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "max_position_embeddings": 40960,
        "vocab_size": 256,
        "torch_dtype": "bfloat16",
        "sliding_window": None,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "rope_theta": 1000000,
    }
    cfg.update(over)
    return cfg


def checkpoint_files(
    config: dict | None = None,
    template: str | None = QWEN3_TEMPLATE,
    *,
    generation: dict | None = None,
    weights: dict[str, tuple[str, list[int]]] | None = None,
    extra: dict[str, bytes] | None = None,
    weight_data: bool = True,
) -> dict[str, bytes]:
    """The files of a tiny checkpoint: config.json, tokenizer_config.json (with the chat template),
    generation_config.json and model.safetensors."""
    config = config or qwen3_config()
    hidden, vocab = config.get("hidden_size", 64), config.get("vocab_size", 256)
    files = {
        "config.json": json.dumps(config, indent=2).encode(),
        "tokenizer_config.json": json.dumps(
            {"eos_token": "<|im_end|>", **({"chat_template": template} if template else {})}
        ).encode(),
        "model.safetensors": safetensors_bytes(
            weights
            or {
                "model.embed_tokens.weight": ("BF16", [vocab, hidden]),
                "model.layers.0.self_attn.q_proj.weight": ("BF16", [hidden, hidden]),
                "model.norm.weight": ("BF16", [hidden]),
            },
            data=weight_data,
        ),
    }
    if generation is not None:
        files["generation_config.json"] = json.dumps(generation).encode()
    files.update(extra or {})
    return files


def write_dir(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def populate_cache(
    hub_cache: Path, repo: str, files: dict[str, bytes], commit: str = COMMIT, refs: tuple[str, ...] = ("main",)
) -> Path:
    """The HF cache layout huggingface_hub writes: blobs named by content hash, snapshot symlinks into them, refs."""
    root = hub_cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


class HubServer:
    """The Hub as huggingface_hub talks to it, for a few repos: `repos[repo] = {path: bytes}` at COMMIT (revision
    `main` or the commit); `gated` repos answer 403 GatedRepo. `requests` records (method, path, range)."""

    def __init__(self, repos: dict[str, dict[str, bytes]], gated: set[str] | None = None):
        self.repos, self.gated = repos, gated or set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.agents: list[str] = []  # User-Agent of each request, in order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _error(self, status: int, code: str | None = None) -> None:
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _handle(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                server.requests.append(("HEAD" if head else "GET", path, self.headers.get("Range")))
                server.agents.append(self.headers.get("User-Agent") or "")
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and "tree" in parts:
                    i = parts.index("tree")
                    repo, rev = "/".join(parts[2:i]), parts[i + 1]
                    return self._tree(repo, rev)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    return self._file(repo, rev, name, head)
                return self._error(404)

            def _repo(self, repo: str, rev: str) -> dict | None:
                if repo in server.gated:
                    self._error(403, "GatedRepo")
                    return None
                if repo not in server.repos:
                    self._error(404, "RepoNotFound")
                    return None
                if rev not in ("main", COMMIT):
                    self._error(404, "RevisionNotFound")
                    return None
                return server.repos[repo]

            def _tree(self, repo: str, rev: str) -> None:
                files = self._repo(repo, rev)
                if files is None:
                    return
                body = json.dumps(
                    [
                        {"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                        for p, d in sorted(files.items())
                    ]
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _file(self, repo: str, rev: str, name: str, head: bool) -> None:
                files = self._repo(repo, rev)
                if files is None:
                    return
                if name not in files:
                    return self._error(404, "EntryNotFound")
                data = files[name]
                status, start, end = 200, 0, len(data) - 1
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not head:
                    a, _, b = rng[6:].partition("-")
                    start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                    status = 206
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(end - start + 1))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if not head:
                    self.wfile.write(data[start : end + 1])

            def do_HEAD(self):  # noqa: N802
                self._handle(True)

            def do_GET(self):  # noqa: N802
                self._handle(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bytes_sent_for(self, name: str) -> list[str | None]:
        """The Range headers of every GET of a file named `name`."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + name)]
