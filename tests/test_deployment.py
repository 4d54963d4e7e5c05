"""Deployment resolution: card settings verbatim, servectl's own settings, overrides, guards."""

import pytest

from servectl.spec.resolve import Request, card_profile_names, resolve
from servectl.errors import UserError
from servectl.spec.models import LaunchOptions


def spec_for(catalog, model, gpu, *overrides, **kw):
    return resolve(Request(catalog.model(model), catalog.gpu(gpu), list(overrides), **kw))


def test_user_flags_override_recipe_settings_in_place(catalog):
    spec = spec_for(catalog, "qwen3.5-35b-a3b-nvfp4", "rtx-5090", "--max-model-len", "16384")
    args = spec.vllm_args
    assert args.count("--max-model-len") == 1
    assert args[args.index("--max-model-len") + 1] == "16384"


def test_preset_picks_the_utilization(catalog):
    desktop = spec_for(catalog, "qwen3.5-35b-a3b-nvfp4", "rtx-5090", preset="desktop").vllm_args
    headless = spec_for(catalog, "qwen3.5-35b-a3b-nvfp4", "rtx-5090", preset="headless").vllm_args
    assert desktop[desktop.index("--gpu-memory-utilization") + 1] == "0.905"
    assert headless[headless.index("--gpu-memory-utilization") + 1] == "0.956"


def test_gptq_on_rocm_gets_float16_and_tensor_parallel(catalog):
    spec = spec_for(catalog, "qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu")
    assert spec.vllm_args[spec.vllm_args.index("--dtype") + 1] == "float16"
    assert spec.gpu_count == 4


def test_secrets_are_names_not_values(catalog):
    spec = spec_for(catalog, "qwen3.5-35b-a3b-nvfp4", "rtx-5090", options=LaunchOptions(secrets=["HF_TOKEN"]))
    assert spec.secret_env == ["HF_TOKEN"]
    assert "HF_TOKEN" not in spec.env


def test_generic_card_covers_every_profile_that_runs_the_model(catalog):
    recipe = catalog.model("qwen3.5-35b-a3b-mxfp4")
    assert set(card_profile_names(recipe)) == set(recipe.profiles)


def test_card_without_settings_for_the_pair_names_the_pairs_that_have_some(catalog):
    with pytest.raises(UserError) as err:
        spec_for(catalog, "qwen3.6-35b-a3b-fp8", "rtx-pro-6000-blackwell", card=True)
    assert "--gpu dgx-spark" in err.value.one_line()


def test_unlisted_profile_needs_force(catalog):
    with pytest.raises(UserError):
        spec_for(catalog, "qwen3.5-35b-a3b-nvfp4", "cpu")
