"""Multi-node vLLM on Ray: tensor parallel within a node, pipeline parallel across nodes.

Three renderings of one layout (T = GPUs per node from the profile, N = --nodes):
- `k8s-lws`: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) + ClusterIP Service on the leader, as in
  vLLM's docs/deployment/frameworks/lws.md: the leader starts the Ray head and `vllm serve`, the
  workers join with `ray start --address=$(LWS_LEADER_ADDRESS):6379 --block` (LWS injects that
  variable; the kubelet expands `$(VAR)` in command/args).
- `k8s-raycluster`: a KubeRay RayCluster (ray.io/v1) + Service on the head pod. The head overrides
  KubeRay's command (annotation `ray.io/overwrite-container-cmd`) to start Ray without --block and
  then exec `vllm serve`; workers run KubeRay's generated `$KUBERAY_GEN_RAY_START_CMD`.
- `ray-nodes`: a POSIX sh script with the per-node commands of vLLM's
  examples/online_serving/multi-node-serving.sh (`ray start --head` on node 0, `ray start --address`
  on the others, `vllm serve` on the head).

The head waits for every node before `vllm serve` (WAIT_FOR_NODES_PY, bounded by
SERVECTL_NODES_WAIT_S, default 600 s) and fails naming the nodes that did not join. Without it vLLM
would wait silently up to PG_WAIT_TIMEOUT (1800 s) for its placement group and then report only a
resource shortfall (vllm/v1/executor/ray_utils.py, _wait_until_pg_ready). Nodes are named with
`ray start --node-name` (node-K in the script, leader / worker-K under LWS); KubeRay starts its
workers itself, unnamed, so there the message counts them.
"""

from __future__ import annotations

import shlex
from typing import Any

from servectl.vllmenv import args as va
from servectl.render import k8s
from servectl.catalog.gpu import GpuProfile
from servectl.catalog.recipe import ModelRecipe
from servectl.spec import layout as spec_layout
from servectl.spec.models import LaunchSpec

RAY_PORT = 6379
MAX_NODES = spec_layout.MAX_NODES
NODES_WAIT_S = 600

# Run on the head after `ray start --head` (with RAY_ADDRESS set): argv = node count, seconds, expected
# node names (optional). Exit 1 with one line naming what is missing when the time is up.
WAIT_FOR_NODES_PY = """\
import sys, time, ray
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
"""


def wait_for_nodes(nodes: int, names: list[str], limit: str = f"${{SERVECTL_NODES_WAIT_S:-{NODES_WAIT_S}}}") -> str:
    """The sh command that waits for `nodes` Ray nodes (a bounded wait; see WAIT_FOR_NODES_PY)."""
    return f'python3 -c {shlex.quote(WAIT_FOR_NODES_PY)} {nodes} "{limit}"' + "".join(f" {shlex.quote(n)}" for n in names)


def layout(profile: GpuProfile, nodes: int) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel): spec.layout's, which resolve already applied to the spec."""
    return spec_layout.layout(profile, nodes)


def parallel_args(spec: LaunchSpec, tp: int, pp: int) -> list[str]:
    """The spec's vLLM args with the multi-node parallel sizes and the Ray executor, in place (idempotent: a spec
    resolved with `nodes` has them already)."""
    return va.to_tokens(spec_layout.with_layout(va.parse_args(spec.vllm_args), tp, pp))


def layout_note(profile: GpuProfile, recipe: ModelRecipe, tp: int, pp: int) -> str:
    """Annotation text: the parallel layout only (servectl.plan.planner has no tp x pp sharding function yet)."""
    return (
        f"tensor-parallel {tp} x pipeline-parallel {pp} = {tp * pp} {profile.name} GPUs ({tp} per node, {pp} nodes, Ray executor)"
    )


def _head_command(spec: LaunchSpec, args: list[str], tp: int, head_flags: list[str], nodes: int, names: list[str]) -> str:
    serve = shlex.join(["vllm", "serve", *k8s.serve_args(spec, args)])
    ray = shlex.join(["ray", "start", "--head", f"--port={RAY_PORT}", f"--num-gpus={tp}", *head_flags])
    return f"{ray} && export RAY_ADDRESS=127.0.0.1:{RAY_PORT} && {wait_for_nodes(nodes, names)} && exec {serve}"


def _pod_spec(
    spec: LaunchSpec, profile: GpuProfile, recipe: ModelRecipe, container: dict, tp: int, pp: int, cache_claim: str
) -> dict[str, Any]:
    vols, mounts = k8s.volumes(spec, tp, cache_claim)
    container = {
        **container,
        "env": k8s.env(spec, k8s.secret_name(spec)),
        "resources": k8s.resources(spec, profile, recipe, tp, 1.0 / pp),
        "volumeMounts": mounts,
    }
    return {**k8s.scheduling(profile), "terminationGracePeriodSeconds": 60, "containers": [container], "volumes": vols}


def _http_port(spec: LaunchSpec) -> list[dict]:
    return [{"name": k8s.HTTP_PORT_NAME, "containerPort": spec.container_port, "protocol": "TCP"}]


def lws_manifests(spec: LaunchSpec, profile: GpuProfile, recipe: ModelRecipe, nodes: int) -> list[dict[str, Any]]:
    tp, pp = layout(profile, nodes)
    args = parallel_args(spec, tp, pp)
    name = k8s.k8s_name(spec.name)
    cache = f"{name}-cache"
    base_labels = k8s.labels(spec)
    names = ["leader", *(f"worker-{i}" for i in range(1, nodes))]
    leader = {
        "name": "vllm-leader",
        "image": k8s.image(spec),
        "command": ["sh", "-c", _head_command(spec, args, tp, ["--node-name=leader"], nodes, names)],
        "ports": _http_port(spec),
        **k8s.probes(spec, recipe),
    }
    worker = {
        "name": "vllm-worker",
        "image": k8s.image(spec),
        # LWS sets LWS_WORKER_INDEX (1..size-1) in every worker; the shell expands it
        "command": [
            "sh",
            "-c",
            f"ray start --address=$(LWS_LEADER_ADDRESS):{RAY_PORT} --num-gpus={tp} "
            "--node-name=worker-${LWS_WORKER_INDEX} --block",
        ],
    }
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {
            "name": name,
            "labels": base_labels,
            "annotations": k8s.pod_annotations(spec, layout_note(profile, recipe, tp, pp)),
        },
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": nodes,
                # One failed pod breaks the Ray cluster: restart the whole group together.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {
                    "metadata": {"labels": {**base_labels, "role": "leader"}},
                    "spec": _pod_spec(spec, profile, recipe, leader, tp, pp, cache),
                },
                "workerTemplate": {
                    "metadata": {"labels": {**base_labels, "role": "worker"}},
                    "spec": _pod_spec(spec, profile, recipe, worker, tp, pp, cache),
                },
            },
        },
    }
    selector = {"leaderworkerset.sigs.k8s.io/name": name, "role": "leader"}
    # Every pod reads the checkpoint: one ReadWriteMany claim (NFS, CephFS, ...) shared by the group.
    return [k8s.pvc(spec, recipe, cache, "ReadWriteMany"), lws, k8s.service(spec, selector)]


def raycluster_manifests(spec: LaunchSpec, profile: GpuProfile, recipe: ModelRecipe, nodes: int) -> list[dict[str, Any]]:
    tp, pp = layout(profile, nodes)
    args = parallel_args(spec, tp, pp)
    name = k8s.k8s_name(spec.name)
    cache = f"{name}-cache"
    overwrite = {"ray.io/overwrite-container-cmd": "true"}
    head = {
        "name": "ray-head",
        "image": k8s.image(spec),
        "command": ["sh", "-c", _head_command(spec, args, tp, [f"--dashboard-host={spec.ray_dashboard_host}"], nodes, [])],
        "ports": [*_http_port(spec), {"name": "gcs", "containerPort": RAY_PORT, "protocol": "TCP"}],
        **k8s.probes(spec, recipe),
    }
    worker = {
        "name": "ray-worker",
        "image": k8s.image(spec),
        "command": ["/bin/bash", "-c", "--"],
        "args": ['ulimit -n 65536; exec /bin/bash -c "$KUBERAY_GEN_RAY_START_CMD"'],
    }
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "labels": k8s.labels(spec),
            "annotations": k8s.pod_annotations(spec, layout_note(profile, recipe, tp, pp)),
        },
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {"num-gpus": str(tp)},
                "template": {
                    "metadata": {"labels": k8s.labels(spec), "annotations": overwrite},
                    "spec": _pod_spec(spec, profile, recipe, head, tp, pp, cache),
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu",
                    "replicas": nodes - 1,
                    "minReplicas": nodes - 1,
                    "maxReplicas": nodes - 1,
                    # KubeRay reads only nvidia.com/gpu from resources; state the count for AMD too.
                    "rayStartParams": {"num-gpus": str(tp)},
                    "template": {
                        "metadata": {"labels": k8s.labels(spec), "annotations": overwrite},
                        "spec": _pod_spec(spec, profile, recipe, worker, tp, pp, cache),
                    },
                }
            ],
        },
    }
    selector = {"ray.io/cluster": name, "ray.io/node-type": "head"}
    return [k8s.pvc(spec, recipe, cache, "ReadWriteMany"), cluster, k8s.service(spec, selector)]


def ray_nodes_script(spec: LaunchSpec, profile: GpuProfile, recipe: ModelRecipe, nodes: int) -> str:
    tp, pp = layout(profile, nodes)
    args = parallel_args(spec, tp, pp)
    serve = ["vllm", "serve", spec.model, *args, "--host", spec.host, "--port", str(spec.port)]
    env_words = [f"{k}={v}" for k, v in spec.env.items()]
    names = [f"node-{i}" for i in range(nodes)]
    secrets = ", ".join(spec.secret_env) or "none"
    lines = [
        "#!/bin/sh",
        f"# {spec.name}: {layout_note(profile, recipe, tp, pp)}.",
        "# Per-node commands after vLLM's examples/online_serving/multi-node-serving.sh.",
        f"# Run `sh THIS head` on node 0, then `sh THIS worker HEAD_IP K` on node K (K = 1..{nodes - 1}).",
        f"# The head waits up to SERVECTL_NODES_WAIT_S seconds (default {NODES_WAIT_S}) for all {nodes} Ray nodes",
        "# before `vllm serve`, and names the missing ones if they do not join.",
        "# Every node needs the same vLLM version (with ray), model path and network reach to HEAD_IP:RAY_PORT;",
        f"# secrets ({secrets}) are read from the environment of the head.",
        f"# Environment: RAY_PORT (default {RAY_PORT}); RAY_START_ARGS: more `ray start` flags for this node.",
        "set -eu",
        f"RAY_PORT=${{RAY_PORT:-{RAY_PORT}}}",
        'case "${1:-}" in',
        "  head)",
        f'    ray start --head --port "$RAY_PORT" --num-gpus {tp} --node-name node-0 ${{RAY_START_ARGS:-}}',
        '    export RAY_ADDRESS="127.0.0.1:$RAY_PORT"',
        f"    {wait_for_nodes(nodes, names)}",
        f"    exec {shlex.join(['env', *env_words, *serve]) if env_words else shlex.join(serve)}",
        "    ;;",
        "  worker)",
        f'    exec ray start --block --address "${{2:?usage: $0 worker HEAD_IP K}}:$RAY_PORT" --num-gpus {tp} '
        f'--node-name "node-${{3:?usage: $0 worker HEAD_IP K}}" ${{RAY_START_ARGS:-}}',
        "    ;;",
        "  *)",
        '    echo "usage: $0 head | worker HEAD_IP K" >&2',
        "    exit 2",
        "    ;;",
        "esac",
    ]
    return "\n".join(lines) + "\n"


def render_nodes(fmt: str, spec: LaunchSpec, nodes: int) -> str:
    """A multi-node format for `nodes` nodes."""
    profile, recipe = spec.gpu_profile, spec.model_recipe
    if fmt == "ray-nodes":
        return ray_nodes_script(spec, profile, recipe, nodes)
    build = lws_manifests if fmt == "k8s-lws" else raycluster_manifests
    return k8s.dump(build(spec, profile, recipe, nodes))
