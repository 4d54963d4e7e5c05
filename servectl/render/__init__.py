"""Renderers: pure functions (resolved LaunchSpec, with its recipe and profile objects) -> text in one
target format; one module per format. `outputs.text` is the one entry point (formats, --nodes, files)."""

from __future__ import annotations

# --format name -> module under servectl.render (imported lazily: each pulls only what it needs)
FORMATS: dict[str, str] = {
    "argv": "argv",
    "docker": "docker",
    "vllm-config": "vllm_config",
    "compose": "compose",
    "systemd": "systemd",
    "k8s": "k8s",
    "k8s-lws": "multinode",
    "k8s-raycluster": "multinode",
    "ray-nodes": "multinode",
    "dockerfile": "dockerfile",
}
