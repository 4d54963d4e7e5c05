"""Kubernetes and multi-node rendering, validated offline with kubernetes-validate (real OpenAPI schemas)."""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess

import pytest
import yaml

from servectl.spec.resolve import Request, resolve
from servectl.errors import UserError
from golden_cases import K8S_CASES as GOLDEN_CASES
from golden_cases import K8S_GOLDEN_DIR as GOLDEN_DIR
from golden_cases import k8s_golden_name as golden_filename
from golden_cases import k8s_golden_outputs as golden_outputs
from servectl.render import k8s, multinode
from servectl.render import outputs as render_outputs
from servectl.verify.validate_k8s import validate_documents, validate_text


@pytest.fixture(scope="module")
def outputs():
    return golden_outputs()


def _spec(catalog, recipe, profile, *overrides, **opts):
    from servectl.spec.models import LaunchOptions

    return resolve(Request(catalog.model(recipe), catalog.gpu(profile), list(overrides), options=LaunchOptions(**opts)))


def _docs(text):
    return list(yaml.safe_load_all(text))


def _by_kind(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


# --------------------------------------------------------------------------- golden files + schema validation


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda c: golden_filename(c[0], c[3]))
def test_golden_file_matches_rendering(outputs, case):
    name = golden_filename(case[0], case[3])
    path = GOLDEN_DIR / name
    assert path.exists(), f"missing golden {name}: scripts/regen-golden"
    assert outputs[name] == path.read_text(), f"{name} differs: scripts/regen-golden"


@pytest.mark.parametrize("name", [golden_filename(c[0], c[3]) for c in GOLDEN_CASES if c[3] != "ray-nodes"])
def test_golden_manifests_validate_against_kubernetes_schemas(name):
    text = (GOLDEN_DIR / name).read_text()
    assert validate_text(text) == []
    kinds = {d["kind"] for d in _docs(text)}
    assert "Service" in kinds and "PersistentVolumeClaim" in kinds


@pytest.mark.parametrize("version", ["1.29", "1.37"])
def test_manifests_validate_on_older_and_newest_schemas(outputs, version):
    for name, text in outputs.items():
        if name.endswith(".yaml"):
            assert validate_text(text, version) == [], name


# --------------------------------------------------------------------------- the validator rejects bad input


def test_validator_rejects_string_replicas(outputs):
    docs = _docs(outputs["mxfp4-rtx-5090.k8s.yaml"])
    _by_kind(docs, "Deployment")["spec"]["replicas"] = "two"
    problems = validate_documents(docs)
    assert len(problems) == 1 and "spec.replicas" in problems[0] and "Deployment/" in problems[0]


def test_validator_rejects_unknown_container_key(outputs):
    docs = _docs(outputs["gptq-8bit-rocm-4gpu.k8s.yaml"])
    _by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["gpus"] = 4
    assert any("gpus" in p for p in validate_documents(docs))


def test_validator_rejects_bad_service_port(outputs):
    docs = _docs(outputs["nvfp4-rtx-5090.k8s.yaml"])
    _by_kind(docs, "Service")["spec"]["ports"][0]["port"] = "eight thousand"
    assert validate_documents(docs)


@pytest.mark.parametrize(
    "fmt,template_path",
    [
        ("k8s-lws", ("spec", "leaderWorkerTemplate", "workerTemplate")),
        ("k8s-raycluster", ("spec", "headGroupSpec", "template")),
    ],
)
def test_validator_rejects_bad_pod_template_inside_crd(outputs, fmt, template_path):
    docs = _docs(outputs[golden_filename("gptq-8bit-rocm-4gpu-2nodes", fmt)])
    cr = docs[1]
    node = cr
    for key in template_path:
        node = node[key]
    bad = copy.deepcopy(docs)
    node["spec"]["containers"][0]["imagePullPolicy"] = ["Always"]  # a list where a string belongs
    assert any("imagePullPolicy" in p for p in validate_documents(docs))
    node["spec"]["containers"][0].pop("imagePullPolicy")
    node["spec"]["containers"][0]["shmSize"] = "8Gi"  # unknown key (strict schemas)
    assert any("shmSize" in p for p in validate_documents(docs))
    assert validate_documents(bad) == []


def test_validator_rejects_bad_crd_fields(outputs):
    lws = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-lws.yaml"])
    lws[1]["spec"]["replicas"] = "two"
    assert any("spec.replicas" in p for p in validate_documents(lws))
    ray = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-raycluster.yaml"])
    ray[1]["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 4
    assert any("rayStartParams" in p for p in validate_documents(ray))
    ray[1]["apiVersion"] = "ray.io/v1alpha1"
    assert any("apiVersion" in p for p in validate_documents(ray))


@pytest.mark.parametrize("kind,release", [("LeaderWorkerSet", "v0.10.0"), ("RayCluster", "v1.7.0")])
def test_crd_schemas_are_the_released_ones(kind, release):
    from servectl.verify.validate_k8s import crd_schema

    record = crd_schema(kind)
    assert record["kind"] == kind and record["source"]["release"] == release
    assert len(record["source"]["commit"]) == 40 and release in record["source"]["url"]
    assert "spec" in record["openAPIV3Schema"]["properties"]


def test_crd_schema_refuses_unknown_keys_enums_and_missing_required(outputs):
    lws = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-lws.yaml"])
    lwt = lws[1]["spec"]["leaderWorkerTemplate"]
    lwt["sizee"] = 2  # a typo the API server's strict field validation rejects
    lwt["restartPolicy"] = "Always"  # not in the CRD's enum
    problems = validate_documents(lws)
    assert any("leaderWorkerTemplate" in p and "sizee" in p for p in problems), problems
    assert any("restartPolicy" in p and "Always" in p for p in problems), problems
    ray = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-raycluster.yaml"])
    del ray[1]["spec"]["workerGroupSpecs"][0]["maxReplicas"]  # required by the CRD
    ray[1]["spec"]["headGroupSpec"]["rayStartParam"] = {}
    problems = validate_documents(ray)
    assert any("maxReplicas" in p and "required" in p for p in problems), problems
    assert any("rayStartParam'" in p for p in problems), problems


def test_crd_schema_keeps_open_maps_open(outputs):
    """rayStartParams is a string map in the CRD: any key is fine, a non-string value is not."""
    ray = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-raycluster.yaml"])
    ray[1]["spec"]["workerGroupSpecs"][0]["rayStartParams"]["object-store-memory"] = "100000000"
    assert validate_documents(ray) == []


# --------------------------------------------------------------------------- what the manifests say


def test_single_node_deployment_contents(catalog):
    spec = _spec(catalog, "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu")
    docs = _docs(k8s.render(spec))
    dep = _by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["vllm", "serve"]
    assert c["args"][0] == "btbtyler09/Qwen3.5-35B-A3B-GPTQ-8bit"
    assert c["args"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert c["args"][1:-4] == spec.vllm_args
    assert c["resources"]["limits"] == {"amd.com/gpu": 4}
    assert c["resources"]["requests"]["amd.com/gpu"] == 4
    assert pod["nodeSelector"] == {"amd.com/gpu.family": "CDNA"}
    assert pod["tolerations"][0]["key"] == "amd.com/gpu"
    # /dev/shm in memory, sized per tensor-parallel rank
    dshm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    # HF_TOKEN by reference only
    hf = next(e for e in c["env"] if e["name"] == "HF_TOKEN")
    assert hf == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "qwen3-5-35b-a3b-gptq-8bit-secrets", "key": "HF_TOKEN", "optional": True}},
    }
    # start-up budget >= 30 min for a 35B checkpoint
    sp = c["startupProbe"]
    assert sp["httpGet"]["path"] == "/health"
    assert sp["failureThreshold"] * sp["periodSeconds"] >= 30 * 60
    assert c["readinessProbe"]["httpGet"]["path"] == "/health" and c["livenessProbe"]["httpGet"]["path"] == "/health"
    svc = _by_kind(docs, "Service")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 8000
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"]
    pvc = _by_kind(docs, "PersistentVolumeClaim")
    claim = next(v for v in pod["volumes"] if v["name"] == "cache")["persistentVolumeClaim"]["claimName"]
    assert claim == pvc["metadata"]["name"]
    assert {"name": "cache", "mountPath": "/root/.cache"} in c["volumeMounts"]


def test_nvidia_profile_uses_nvidia_resource_and_env(catalog):
    spec = _spec(catalog, "qwen3.5-35b-a3b-nvfp4", "rtx-5090")
    c = _by_kind(_docs(k8s.render(spec)), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert {"name": "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "value": "1"} in c["env"]
    assert c["image"] == "vllm/vllm-openai:v0.18.0-cu130"


def test_image_override_and_secret_names_only(catalog):
    spec = _spec(
        catalog,
        "qwen3.5-35b-a3b-mxfp4",
        "rtx-5090",
        image="registry.local/vllm-patched:0.18.0-servectl1",
        secrets=["HF_TOKEN", "VLLM_API_KEY"],
    )
    text = k8s.render(spec)
    c = _by_kind(_docs(text), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.local/vllm-patched:0.18.0-servectl1"
    assert [e["name"] for e in c["env"] if "valueFrom" in e] == ["HF_TOKEN", "VLLM_API_KEY"]
    assert validate_text(text) == []


def test_names_are_rfc1035_labels(catalog):
    assert k8s.k8s_name("qwen3.5-35b-a3b-mxfp4") == "qwen3-5-35b-a3b-mxfp4"
    assert k8s.k8s_name("35B_Model") == "vllm-35b-model"
    assert len(k8s.k8s_name("a" * 100)) == 63


def test_cpu_profile_renders_without_gpu_resources(catalog):
    spec = _spec(catalog, "tiny-cpu", "cpu")
    text = k8s.render(spec)
    c = _by_kind(_docs(text), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "limits" not in c["resources"]
    assert validate_text(text) == []


# --------------------------------------------------------------------------- multi-node


def test_lws_layout(outputs):
    docs = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-lws.yaml"])
    lws = _by_kind(docs, "LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]
    worker = lwt["workerTemplate"]["spec"]["containers"][0]
    ray, export, wait, serve = leader["command"][2].split(" && ")
    assert shlex.split(ray)[:3] == ["ray", "start", "--head"] and "--node-name=leader" in shlex.split(ray)
    assert export == "export RAY_ADDRESS=127.0.0.1:6379"
    # the leader waits (bounded) for the whole group, naming each node, before vllm serve
    assert shlex.split(wait)[:2] == ["python3", "-c"] and shlex.split(wait)[2] == multinode.WAIT_FOR_NODES_PY
    assert shlex.split(wait)[3:] == ["2", "${SERVECTL_NODES_WAIT_S:-600}", "leader", "worker-1"]
    words = shlex.split(serve.removeprefix("exec "))
    assert words[:3] == ["vllm", "serve", "btbtyler09/Qwen3.5-35B-A3B-GPTQ-8bit"]
    assert words[words.index("--tensor-parallel-size") + 1] == "4"
    assert words[words.index("--pipeline-parallel-size") + 1] == "2"
    assert words[words.index("--distributed-executor-backend") + 1] == "ray"
    assert words.count("--tensor-parallel-size") == 1
    assert "ray start --address=$(LWS_LEADER_ADDRESS):6379" in worker["command"][2] and "--block" in worker["command"][2]
    assert "--node-name=worker-${LWS_WORKER_INDEX}" in worker["command"][2]
    assert leader["resources"]["limits"] == worker["resources"]["limits"] == {"amd.com/gpu": 4}
    svc = _by_kind(docs, "Service")
    assert svc["spec"]["selector"] == {"leaderworkerset.sigs.k8s.io/name": lws["metadata"]["name"], "role": "leader"}
    assert lwt["leaderTemplate"]["metadata"]["labels"]["role"] == "leader"
    assert "pipeline-parallel 2" in lws["metadata"]["annotations"]["servectl.io/parallel"]


def test_raycluster_layout(outputs):
    docs = _docs(outputs["gptq-8bit-rocm-4gpu-2nodes.k8s-raycluster.yaml"])
    rc = _by_kind(docs, "RayCluster")
    group = rc["spec"]["workerGroupSpecs"][0]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 1
    assert group["rayStartParams"] == {"num-gpus": "4"}
    head = rc["spec"]["headGroupSpec"]["template"]
    assert head["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    assert "--pipeline-parallel-size 2" in head["spec"]["containers"][0]["command"][2]
    wait = head["spec"]["containers"][0]["command"][2].split(" && ")[2]
    assert shlex.split(wait)[3:] == ["2", "${SERVECTL_NODES_WAIT_S:-600}"]  # KubeRay names no nodes: counted
    assert "$KUBERAY_GEN_RAY_START_CMD" in group["template"]["spec"]["containers"][0]["args"][0]
    assert _by_kind(docs, "Service")["spec"]["selector"] == {"ray.io/cluster": rc["metadata"]["name"], "ray.io/node-type": "head"}


def test_ray_nodes_script_is_valid_sh(outputs, tmp_path):
    text = outputs["gptq-8bit-rocm-4gpu-2nodes.ray-nodes.sh"]
    script = tmp_path / "nodes.sh"
    script.write_text(text)
    sh = shutil.which("sh")
    assert subprocess.run([sh, "-n", str(script)]).returncode == 0
    # without a role it refuses, with exit 2, before running anything
    res = subprocess.run([sh, str(script)], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr
    lines = [ln.strip() for ln in text.splitlines()]
    assert 'ray start --head --port "$RAY_PORT" --num-gpus 4 --node-name node-0 ${RAY_START_ARGS:-}' in lines
    wait = next(ln for ln in lines if ln.startswith("' 2 "))  # the end of the node wait's python3 -c '...'
    assert shlex.split(wait[1:]) == ["2", "${SERVECTL_NODES_WAIT_S:-600}", "node-0", "node-1"]
    # a worker without its node index refuses before starting Ray
    res = subprocess.run([sh, str(script), "worker", "10.0.0.1"], capture_output=True, text=True)
    assert res.returncode != 0 and "usage" in res.stderr and "worker HEAD_IP K" in res.stderr
    serve = shlex.split(next(ln for ln in lines if ln.startswith("exec vllm serve")))
    assert serve[serve.index("--pipeline-parallel-size") + 1] == "2"
    assert serve[serve.index("--host") + 1] == "127.0.0.1"


def test_node_wait_program_compiles():
    compile(multinode.WAIT_FOR_NODES_PY, "wait-for-nodes", "exec")


def test_multinode_single_gpu_profile_is_pipeline_only(catalog):
    spec = _spec(catalog, "qwen3.5-35b-a3b-nvfp4", "rtx-5090")
    text = render_outputs.text("k8s-lws", spec, nodes=3)
    lws = _by_kind(_docs(text), "LeaderWorkerSet")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 3
    cmd = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]["command"][2]
    assert "--tensor-parallel-size 1 " in cmd and "--pipeline-parallel-size 3 " in cmd
    assert validate_text(text) == []


def test_nodes_option_errors(catalog):
    spec = _spec(catalog, "qwen3.5-35b-a3b-mxfp4", "rtx-5090")
    with pytest.raises(UserError, match="multi-node format"):
        render_outputs.text("k8s", spec, nodes=2)
    with pytest.raises(UserError, match="not a multi-node layout"):
        render_outputs.text("k8s-lws", spec, nodes=1)
    assert render_outputs.text("k8s", spec, nodes=1) == k8s.render(spec)


def test_cli_render_k8s_and_nodes(cli):
    res = cli("render", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--format", "k8s-lws", "--nodes", "2")
    assert res.exit_code == 0
    assert res.stdout == (GOLDEN_DIR / "gptq-8bit-rocm-4gpu-2nodes.k8s-lws.yaml").read_text()
    res = cli("render", "qwen3.5-35b-a3b-mxfp4", "--gpu", "rtx-5090", "--format", "argv", "--nodes", "2")
    assert res.exit_code == 2
    assert "multi-node format" in res.output
