"""Prints what a launch reports (servectl.launch.events) for `up` and `demo`: lines on stderr, a live line while
vLLM starts and while an image is pulled, the health report, the summary (and with --json, the summary as JSON
on stdout), and for a failed start its log tail and diagnosis above the error line."""

from __future__ import annotations

from typing import Any

from servectl.cli.app import emit_json, err_console, info, show_detected, warn
from servectl.launch import events as ev


class LaunchPrinter:
    """The `Events` callback of the launch commands; a context manager that closes what is live and prints a
    failed start's details when one ends the command."""

    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        self._status: Any = None
        self._pull: Any = None

    def __enter__(self) -> LaunchPrinter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self._close_status()
        self._close_pull()
        from servectl.launch.report import StartFailed

        if isinstance(exc, StartFailed):
            if exc.headline:
                err_console.print(exc.headline, style="bold red")
            err_console.rule("log tail")
            err_console.print(exc.log_tail, soft_wrap=True)
            err_console.rule("diagnosis")
            for line in exc.diagnosis:
                err_console.print(line, soft_wrap=True)

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.Message(text=text, kind="warning"):
                warn(text)
            case ev.Message(text=text, kind="note"):
                info(f"note: {text}")
            case ev.Message(text=text, kind="step"):
                info(text, style="bold")
            case ev.Message(text=text, kind="done"):
                info(text, style="bold green")
            case ev.Message(text=text):
                info(text)
            case ev.Detected():
                show_detected(event.profile, event.preset, event.reason, event.warnings)
            case ev.ImagePull():
                self._pulling(event)
            case ev.StartupBegan(model=model):
                self._status = err_console.status(f"starting vLLM ({model}) ...")
                self._status.__enter__()
            case ev.PhaseReached(label=label, at_s=at):
                err_console.print(f"  ✓ {label:<36} {at:6.1f} s")
                if self._status is not None:
                    self._status.update(f"vLLM start-up: {label} ...")
            case ev.StartupWaiting(elapsed_s=elapsed):
                if self._status is not None:
                    self._status.update(f"vLLM start-up ... {elapsed:.0f} s")
            case ev.StartupEnded():
                self._close_status()
            case ev.HealthChecked(report=report):
                from servectl.verify.report import report_table

                err_console.print(report_table(report))
            case ev.Ready(summary=data):
                self._ready(data)

    def _ready(self, data: dict[str, Any]) -> None:
        info(f"ready in {data['startup_s']:.1f} s: {data['endpoint']}  model {data['served_model_name']}", style="bold")
        rep, pred = data["kv_cache_tokens_reported"], data["kv_cache_tokens_predicted"]
        if rep is not None or pred is not None:
            line = f"KV cache: vLLM reported {rep:,} tokens" if rep is not None else "KV cache: vLLM reported nothing"
            if pred is not None:
                line += f", plan predicted {pred:,}" + (f" ({(rep - pred) / pred:+.1%})" if rep is not None and pred else "")
            info(line)
        info(f"log: {data['log']}   pid: {data['pid'] or data['container_id']}")
        if self.as_json:
            emit_json(data)

    def _pulling(self, event: ev.ImagePull) -> None:
        if event.done:
            self._close_pull()
            info(f"pulled {event.image}")
            return
        if self._pull is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            bar = Progress(
                TextColumn("pulling {task.fields[image]}"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[line]}"),
                console=Console(stderr=True, markup=False, highlight=False),
                transient=True,
            )
            bar.__enter__()
            self._pull = (bar, bar.add_task("pull", image=event.image, line="", total=None))
        bar, task = self._pull
        bar.update(task, completed=event.current, total=event.total or None, line=event.line)

    def _close_status(self) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None

    def _close_pull(self) -> None:
        if self._pull is not None:
            self._pull[0].__exit__(None, None, None)
            self._pull = None
