"""The launch layer says what it does through events and never prints; the CLI prints them (servectl.cli.progress).
An advisory step that fails (a plan prediction) says so in one warning with its reason and the launch goes on."""

from __future__ import annotations

import json

import pytest

from servectl.launch import events as ev


def test_resolving_a_launch_prints_nothing_and_reports_through_events(capfd, tmp_path):
    from servectl.launch.request import LaunchRequest
    from servectl.launch.start import settle

    seen: list[ev.Event] = []
    # a flag servectl's table of vLLM options lacks: a warning, as an event
    s = settle(
        LaunchRequest("tiny-cpu", gpu="cpu", runtime="docker", model_path=str(tmp_path), vllm_args=("--no-such-vllm-flag",)),
        seen.append,
    )
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    warnings = [e.text for e in seen if isinstance(e, ev.Message) and e.kind == "warning"]
    assert any("--no-such-vllm-flag" in w for w in warnings), seen
    assert s.spec.model == str(tmp_path)


def test_a_failed_prediction_is_one_warning_with_its_reason(catalog):
    from servectl.launch import planning
    from servectl.spec.resolve import Request, resolve

    spec = resolve(Request(catalog.model("tiny-cpu"), catalog.gpu("cpu"), []))
    seen: list[ev.Event] = []
    assert planning.plan_target("not a profile", spec, "local", None, seen.append) is None  # the planner raises inside
    assert len(seen) == 1 and isinstance(seen[0], ev.Message) and seen[0].kind == "warning"
    assert seen[0].text.startswith("the plan of this launch skipped (AttributeError: ") and "the launch goes on" in seen[0].text


def test_the_cli_prints_what_a_launch_reports(capfd):
    from servectl.cli.progress import LaunchPrinter

    summary = {
        "startup_s": 12.5,
        "endpoint": "http://127.0.0.1:8000/v1",
        "served_model_name": "tiny-cpu",
        "kv_cache_tokens_reported": 1000,
        "kv_cache_tokens_predicted": 990,
        "log": "/tmp/x.log",
        "pid": 42,
        "container_id": None,
    }
    with LaunchPrinter(as_json=True) as printer:
        printer(ev.Detected("rtx-5090", "headless", "RTX 5090 matches", ("mixed devices",)))
        printer(ev.Message("--max-num-seqs 8: what the cache holds", "note"))
        printer(ev.Message("a flag nobody knows", "warning"))
        printer(ev.ImagePull("vllm/vllm-openai:v0.32.0", 10, 100, "1/2 layers"))
        printer(ev.ImagePull("vllm/vllm-openai:v0.32.0", done=True))
        printer(ev.StartupBegan("tiny-cpu"))
        printer(ev.PhaseReached("weights loaded", 3.25))
        printer(ev.StartupWaiting(4.0))
        printer(ev.StartupEnded(True))
        printer(ev.Ready(summary))
    out, err = capfd.readouterr()
    assert json.loads(out) == summary  # --json: the summary, on stdout only
    for line in (
        "profile rtx-5090 (preset headless): RTX 5090 matches",
        "warning: mixed devices",
        "note: --max-num-seqs 8",
        "warning: a flag nobody knows",
        "pulled vllm/vllm-openai:v0.32.0",
        "weights loaded",
        "3.2 s",
        "ready in 12.5 s: http://127.0.0.1:8000/v1",
        "plan predicted 990 (+1.0%)",
    ):
        assert line in err, (line, err)


def test_a_failed_start_shows_its_log_tail_and_diagnosis_above_the_error(capfd, tmp_path):
    from servectl.cli.progress import LaunchPrinter
    from servectl.launch.report import StartFailed

    failure = StartFailed(
        "vLLM exited during start-up",
        tmp_path / "x.log",
        "line 1\nKeyError: boom",
        ["root error: boom"],
        known=False,
        headline="vLLM server (pid 7) exited while serving",
    )
    with pytest.raises(StartFailed), LaunchPrinter() as _printer:
        raise failure
    err = capfd.readouterr().err
    assert err.index("exited while serving") < err.index("log tail") < err.index("KeyError: boom") < err.index("root error: boom")
    assert "servectl diagnose" in failure.one_line()  # no rule matched: the hint says how to look further
