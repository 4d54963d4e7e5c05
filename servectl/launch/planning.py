"""What the planner says about a launch: the release and host it runs on, servectl's --max-num-seqs for them,
the KV cache size to expect, and the calibration a real start leaves for later plans. The predictions are
advisory: a launch never fails on one, and one that cannot be made is said in one warning line with its reason."""

from __future__ import annotations

from servectl.catalog.recipe import ModelRecipe
from servectl.launch.events import Events, Message
from servectl.spec.models import LaunchSpec
from servectl.vllmenv.pyenv import Target


def _skipped(events: Events, what: str, exc: Exception) -> None:
    events(Message(f"{what} skipped ({type(exc).__name__}: {exc}); the launch goes on", "warning"))


def plan_target(profile, spec: LaunchSpec, runtime: str, env_target: Target | None, events: Events):
    """The vLLM release and host this launch runs on, as the planner sees them (None when it cannot say)."""
    from servectl.plan import service

    try:
        return service.target_for(profile, image=spec.image, runtime=runtime, env_target=env_target)
    except Exception as exc:  # noqa: BLE001 - advisory: a launch never fails on a prediction
        _skipped(events, "the plan of this launch", exc)
        return None


def settled_spec(spec: LaunchSpec, plan_tgt) -> LaunchSpec:
    """servectl's --max-num-seqs (what the plan says the KV cache holds) for the release and host that run it;
    with no plan target, the rendering's (the image's release, every CPU feature set)."""
    from servectl.plan import service

    targets = [plan_tgt] if plan_tgt is not None else service.render_target(spec.gpu_profile, spec.image)
    return service.settle_max_num_seqs(spec, targets)


def predicted_kv_tokens(recipe: ModelRecipe, profile, spec: LaunchSpec, plan_tgt, events: Events | None = None) -> int | None:
    """What the plan predicts vLLM will log as its KV cache size; None when the planner cannot say."""
    from servectl.plan import service

    if plan_tgt is None:
        return None
    try:
        return service.predicted_kv_tokens(recipe, profile, spec.vllm_args, spec.env, plan_tgt)
    except Exception as exc:  # noqa: BLE001 - advisory
        if events is not None:
            _skipped(events, "the KV cache prediction", exc)
        return None


def learn_from_start(recipe: ModelRecipe, profile, spec: LaunchSpec, plan_tgt, log_text: str, events: Events) -> None:
    """Every start that reaches vLLM's KV cache line calibrates later plans for (recipe, profile, release, host)."""
    from servectl.plan import service

    if plan_tgt is None:
        return
    try:
        service.learn_from_start(recipe, profile, spec.vllm_args, spec.env, plan_tgt, log_text, f"up {spec.name}")
    except Exception as exc:  # noqa: BLE001 - advisory: a launch never fails on calibration
        _skipped(events, "calibrating later plans from this start", exc)
