vllm serve batsclamp/Huihui-Qwen3.6-35B-A3B-abliterated-FP8
