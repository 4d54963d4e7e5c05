#!/bin/sh
# qwen3.5-35b-a3b-gptq-8bit: tensor-parallel 4 x pipeline-parallel 2 = 8 rocm-4gpu GPUs (4 per node, 2 nodes, Ray executor).
# Per-node commands after vLLM's examples/online_serving/multi-node-serving.sh.
# Run `sh THIS head` on node 0, then `sh THIS worker HEAD_IP K` on node K (K = 1..1).
# The head waits up to SERVECTL_NODES_WAIT_S seconds (default 600) for all 2 Ray nodes
# before `vllm serve`, and names the missing ones if they do not join.
# Every node needs the same vLLM version (with ray), model path and network reach to HEAD_IP:RAY_PORT;
# secrets (HF_TOKEN) are read from the environment of the head.
# Environment: RAY_PORT (default 6379); RAY_START_ARGS: more `ray start` flags for this node.
set -eu
RAY_PORT=${RAY_PORT:-6379}
case "${1:-}" in
  head)
    ray start --head --port "$RAY_PORT" --num-gpus 4 --node-name node-0 ${RAY_START_ARGS:-}
    export RAY_ADDRESS="127.0.0.1:$RAY_PORT"
    python3 -c 'import sys, time, ray
want, limit, names = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
ray.init(logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + limit
print("servectl: waiting up to %g s for %d Ray nodes" % (limit, want), file=sys.stderr)
while True:
    alive = sorted(n["NodeName"] for n in ray.nodes() if n["Alive"])
    if len(alive) >= want:
        break
    if time.monotonic() > deadline:
        missing = [x for x in names if x not in alive] or ["%d more node(s)" % (want - len(alive))]
        sys.exit("servectl: %d of %d Ray nodes joined after %g s (joined: %s); missing: %s"
                 % (len(alive), want, limit, ", ".join(alive), ", ".join(missing)))
    time.sleep(2)
print("servectl: all %d Ray nodes joined: %s" % (want, ", ".join(alive)), file=sys.stderr)
' 2 "${SERVECTL_NODES_WAIT_S:-600}" node-0 node-1
    exec vllm serve btbtyler09/Qwen3.5-35B-A3B-GPTQ-8bit --served-model-name Qwen3.5-35B-A3B-GPTQ-8bit --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser qwen3_coder --dtype float16 --limit-mm-per-prompt '{"image": 2}' --gpu-memory-utilization 0.95 --tensor-parallel-size 4 --max-model-len 256000 --skip-mm-profiling --pipeline-parallel-size 2 --distributed-executor-backend ray --max-num-seqs 4 --host 127.0.0.1 --port 8000
    ;;
  worker)
    exec ray start --block --address "${2:?usage: $0 worker HEAD_IP K}:$RAY_PORT" --num-gpus 4 --node-name "node-${3:?usage: $0 worker HEAD_IP K}" ${RAY_START_ARGS:-}
    ;;
  *)
    echo "usage: $0 head | worker HEAD_IP K" >&2
    exit 2
    ;;
esac
