#!/bin/sh
# qwen3.5-35b-a3b-nvfp4 on rtx-5090
docker run --rm --name Qwen3.5-35B-A3B-NVFP4 --runtime=nvidia --gpus all --ipc=host -e HF_TOKEN -e VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 -v /srv/cache:/root/.cache -p 127.0.0.1:8000:8000 vllm/vllm-openai:v0.18.0-cu130 ig1/Qwen3.5-35B-A3B-NVFP4 --served-model-name Qwen3.5-35B-A3B --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder --max-model-len auto --limit-mm-per-prompt.video 0 --max-cudagraph-capture-size 32 --max-num-seqs 32 --max-num-batched-tokens 2048 --gpu-memory-utilization 0.95
