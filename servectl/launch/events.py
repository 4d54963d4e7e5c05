"""What a launch reports while it runs. The launch layer never prints: it hands these to the caller's `Events`
callback (the CLI prints them, servectl.cli.progress; tests and benchmarks may collect or ignore them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Message:
    """A line for people: `info` (plain), `note` (servectl chose something), `warning`, `step` (a heading of the
    flow), `done` (the flow succeeded)."""

    text: str
    kind: Literal["info", "note", "warning", "step", "done"] = "info"


@dataclass(frozen=True)
class Detected:
    """No --gpu: the profile (and utilization preset) matched to this machine, and why."""

    profile: str
    preset: str
    reason: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImagePull:
    """A container image being pulled: bytes so far (`done`: finished)."""

    image: str
    current: int = 0
    total: int = 0
    line: str = ""
    done: bool = False


@dataclass(frozen=True)
class StartupBegan:
    model: str


@dataclass(frozen=True)
class PhaseReached:
    """A phase of vLLM's start-up (servectl.launch.startup.PHASES) seen in its log, seconds after the start."""

    label: str
    at_s: float


@dataclass(frozen=True)
class StartupWaiting:
    elapsed_s: float


@dataclass(frozen=True)
class StartupEnded:
    ready: bool


@dataclass(frozen=True)
class HealthChecked:
    """The API checks after start-up (servectl.verify.report.Report)."""

    report: Any


@dataclass(frozen=True)
class Ready:
    """The launch summary (servectl.launch.report.summary: the `--json` keys of `up` and `demo`)."""

    summary: dict[str, Any] = field(default_factory=dict)


Event = Message | Detected | ImagePull | StartupBegan | PhaseReached | StartupWaiting | StartupEnded | HealthChecked | Ready
Events = Callable[[Event], None]


def ignore(event: Event) -> None:
    """For callers that show nothing."""
