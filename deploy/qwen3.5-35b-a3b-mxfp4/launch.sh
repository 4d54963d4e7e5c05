#!/bin/sh
# qwen3.5-35b-a3b-mxfp4 on rtx-5090
vllm serve olka-fi/Qwen3.5-35B-A3B-MXFP4 --gpu-memory-utilization 0.85 --max-model-len 4096 --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder
