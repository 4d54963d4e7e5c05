#!/bin/sh
# qwen3.5-35b-a3b-gptq-8bit on rocm-4gpu
vllm serve btbtyler09/Qwen3.5-35B-A3B-GPTQ-8bit --gpu-memory-utilization 0.95 --max-model-len 256000 --tensor-parallel-size 4 --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder --dtype float16 --skip-mm-profiling --limit-mm-per-prompt '{"image": 2}'
