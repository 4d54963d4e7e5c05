vllm serve olka-fi/Qwen3.5-35B-A3B-MXFP4 --gpu-memory-utilization 0.85 --max-model-len 4096 --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder
