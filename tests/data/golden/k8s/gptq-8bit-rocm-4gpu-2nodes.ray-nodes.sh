#!/bin/sh
# qwen3.5-35b-a3b-gptq-8bit: tensor-parallel 4 x pipeline-parallel 2 = 8 rocm-4gpu GPUs (4 per node, 2 nodes, Ray executor).
# Per-node commands after vLLM's examples/online_serving/multi-node-serving.sh.
# Run `sh THIS head` on node 0, then `sh THIS worker HEAD_IP` on each of the other 1 node(s).
# Every node needs the same vLLM version, model path and network reach to HEAD_IP:6379;
# secrets (HF_TOKEN) are read from the environment of the head.
set -eu
case "${1:-}" in
  head)
    ray start --head --port 6379 --num-gpus 4
    exec vllm serve btbtyler09/Qwen3.5-35B-A3B-GPTQ-8bit --served-model-name Qwen3.5-35B-A3B-GPTQ-8bit --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder --dtype float16 --limit-mm-per-prompt '{"image": 2}' --gpu-memory-utilization 0.95 --tensor-parallel-size 4 --max-model-len 256000 --skip-mm-profiling --pipeline-parallel-size 2 --distributed-executor-backend ray --host 127.0.0.1 --port 8000
    ;;
  worker)
    exec ray start --num-gpus 4 --block --address "${2:?usage: $0 worker HEAD_IP}:6379"
    ;;
  *)
    echo "usage: $0 head | worker HEAD_IP" >&2
    exit 2
    ;;
esac
