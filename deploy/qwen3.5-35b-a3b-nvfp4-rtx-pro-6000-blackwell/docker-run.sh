#!/bin/sh
# qwen3.5-35b-a3b-nvfp4 on rtx-pro-6000-blackwell
docker run --rm --name Qwen3.5-35B-A3B-NVFP4 --runtime=nvidia --gpus all --ipc=host -e HF_TOKEN -e VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 -v /srv/cache:/root/.cache -p 127.0.0.1:8000:8000 vllm/vllm-openai:v0.18.0-cu130 ig1/Qwen3.5-35B-A3B-NVFP4 --served-model-name Qwen3.5-35B-A3B --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder --max-model-len auto --gpu-memory-utilization 0.65 --kv-cache-memory-bytes 20600M
