"""The fleet file (`servectl serve FLEET.yaml`): schema, reading, and every mistake as one line `FILE:LINE: where: what`.

The schema follows the catalog's pattern (servectl.catalog.base): frozen keyword-only dataclasses that pydantic
validates, with bounds and a comment under every field. Cross-checks that need the catalog (recipe and profile
names, name collisions, vLLM flags) run after the schema and report in the same shape, all at once.

    name: home                    # record names are NAME-MODEL (default: the file's name)
    listen: 127.0.0.1:8080
    gpu: rtx-5090                 # profile of every model unless a model names its own
    memory_limit: 24G             # optional cap on what the models hold together
    queue: {max_waiting: 64, timeout: 10m}
    models:
      coder:
        model: qwen3.5-35b-a3b-nvfp4
        context: 32768            # KV cache for `concurrency` requests of this length
        ttl: 30m
        preload: true
        aliases: [code]
      chat:
        model: /srv/models/my-finetune
        recipe: qwen3.5-35b-a3b-nvfp4
        args: [--max-num-seqs, "8"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator

from servectl.catalog.base import Ge, Le, MinLen, schema, validate
from servectl.errors import UserError
from servectl.fsutil import yaml_call

MAX_FILE_BYTES = 1 << 20  # a fleet file is a few kB; anything near this is not one
# A model's public name: what clients put in `model` (OpenAI names often carry `org/`), a Prometheus label value.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
FLEET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
# vLLM's suffixes (upper case binary, lower case decimal; vllm/engine/arg_utils.py human_readable_int), IEC and SI units
_SIZE_UNITS = {"": 1, "B": 1, **{u: 1024**i for i, u in enumerate("KMGT", 1)}, **{u: 1000**i for i, u in enumerate("kmgt", 1)},
               **{f"{u}iB": 1024**i for i, u in enumerate("KMGT", 1)}, **{f"{u}i": 1024**i for i, u in enumerate("KMGT", 1)},
               **{f"{u}B": 1000**i for i, u in enumerate("KMGT", 1)}, "kB": 1000}


def seconds(value: str | int | float) -> float:
    """A duration: a number of seconds, or `1h30m`, `10m`, `45s` (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 10m")
    if isinstance(value, (int, float)):
        out = float(value)
    else:
        m = _DURATION.match(value.strip())
        if not value.strip() or not m or not any(m.groups()):
            raise ValueError(f"{value!r} is not a duration such as 90s, 10m or 1h30m")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        out = h * 3600 + mi * 60 + s
    if not 0 <= out <= 366 * 86400 or out != out:
        raise ValueError(f"{value!r} is not a duration between 0 and a year")
    return out


def size_bytes(value: str | int) -> int:
    """A size: bytes, or with a unit as vLLM reads them (64M, 2G binary; 32k decimal) or spelled out (24GiB binary,
    8GB decimal)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or text such as 24G")
    if isinstance(value, int):
        out = value
    else:
        m = _SIZE.match(value.strip())
        if not m or m.group(2) not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size such as 512M, 24G or 24GiB")
        out = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    if out <= 0 or out > 2**50:
        raise ValueError(f"{value!r} is not a size between 1 byte and 1 PiB")
    return out


def parse_listen(value: str | int) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or PORT -> (host, port); the host defaults to 127.0.0.1; port 0 lets the OS choose."""
    text = str(value).strip()
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT with a port in 0-65535")
    return host, int(port)


def _duration(value: Any) -> Any:
    seconds(value)
    return value


def _size(value: Any) -> Any:
    size_bytes(value)
    return value


def _listen(value: Any) -> Any:
    parse_listen(value)
    return value


def _fleet_name(value: Any) -> Any:
    if value is not None and not FLEET_NAME.match(value):
        raise ValueError(f"{value!r}: use 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def _on_off(value: Any) -> Any:
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value  # YAML 1.1 reads `on` as true


# Checked where they stand, so that every mistake of a file is reported at once (a __post_init__ check would
# run only once every other field of its record is valid).
Duration = Annotated[str | int | float, AfterValidator(_duration)]
Size = Annotated[str | int, AfterValidator(_size)]
Listen = Annotated[str | int, AfterValidator(_listen)]
FleetName = Annotated[str | None, AfterValidator(_fleet_name)]
SleepChoice = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)]


@schema
class QueueSettings:
    """How requests wait for a model that is not ready yet (starting, waking, or waiting for room)."""

    max_waiting: Annotated[int, Ge(1), Le(100_000)] = 64  # Requests that may wait for one model at a time; more are refused with 503.
    timeout: Duration = "10m"  # How long a request waits for its model to become ready; then 503 saying why.


@schema
class FleetModel:
    """One model behind the front door; its key in `models` is the name clients use."""

    model: str  # A catalog recipe name, a hub repo id (org/name) or a local checkpoint directory.
    recipe: str | None = None  # The recipe whose settings serve a directory or another repo (until any model is accepted on its own).
    gpu: str | None = None  # GPU profile (default: the fleet's `gpu`, else the detected one; cpu for CPU-only recipes).
    args: list[str] = field(default_factory=list)  # vLLM flags, as after `--` in `servectl up`.
    env: dict[str, str] = field(default_factory=dict)  # Extra environment of the server (non-secret values only).
    context: Annotated[int, Ge(1)] | None = None  # Size the KV cache for `concurrency` requests of this many tokens (sets --max-model-len).
    concurrency: Annotated[int, Ge(1), Le(65536)] = 1  # Requests of `context` tokens the KV cache must hold at once.
    ttl: Duration | None = None  # Idle time after which the model sleeps (sleep mode) or stops; unset or 0: never.
    preload: bool = False  # Start it with the fleet (in file order, while it fits beside the models already started).
    aliases: list[str] = field(default_factory=list)  # Other names that route to this model.
    presets: str | None = None  # Sampling presets served as `<name>-<preset>` (names or families, `auto`; default: the recipe's family).
    sleep: SleepChoice | None = None  # Sleep instead of stopping when idle or evicted (default: the fleet's `sleep`).
    start_timeout: Duration | None = None  # Seconds a start may take (default: the fleet's).


@schema
class FleetFile:
    """A fleet: several models behind one OpenAI-compatible endpoint, placed by what fits in memory."""

    name: FleetName = None  # Fleet name; its servers' records are NAME-MODEL (default: the file's name).
    listen: Listen = "127.0.0.1:8080"  # HOST:PORT of the front door (port 0: chosen by the OS and printed).
    gpu: str | None = None  # Default GPU profile of the models (default: detected; cpu when no GPU).
    preset: str | None = None  # The profile's utilization preset whose share of the device the fleet may use (default: the profile's).
    memory_limit: Size | None = None  # Cap on the device memory the models hold together (e.g. 24G); default: the preset's share.
    python: str | None = None  # Interpreter of the vLLM environment (default: servectl bootstrap's).
    sleep: SleepChoice = "auto"  # vLLM's sleep mode for idle models: auto = where the platform has it (GPU releases), never on CPU.
    start_timeout: Duration = "15m"  # Seconds a model's start may take before it is stopped and reported.
    max_body_mib: Annotated[int, Ge(1), Le(4096)] = 32  # Largest request body accepted; larger ones get 413.
    queue: QueueSettings = field(default_factory=QueueSettings)  # Waiting for a model that is not ready.
    models: Annotated[dict[str, FleetModel], MinLen(1)]  # The models, by the name clients use.


class FleetFileError(UserError):
    """A fleet file with mistakes: `problems` holds one line per mistake (FILE:LINE: where: what)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more, "fix each line named")

    def lines(self) -> list[str]:
        return list(self.problems)


@dataclass
class FleetSource:
    """A validated fleet file and where each of its values stands (for later problems' line numbers)."""

    path: Path
    fleet: FleetFile
    root: Any  # the composed YAML node tree

    @property
    def name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "-", self.path.stem)[:32].strip("-.") or "fleet"
        return self.fleet.name or stem

    def where(self, *loc: Any) -> str:
        """`FILE:LINE` of a value (or of the key whose entry lacks it)."""
        return f"{self.path}:{line_of(self.root, loc)}"

    def problem(self, loc: tuple[Any, ...], message: str) -> str:
        return f"{self.where(*loc)}: {'.'.join(str(p) for p in loc) or '(top level)'}: {message}"


def line_of(root: Any, loc: tuple[Any, ...]) -> int:
    """1-based line of the YAML value at `loc`; for a key that is missing, the line of the entry that lacks it."""
    import yaml

    node, line = root, (root.start_mark.line + 1 if root is not None else 1)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                return line
            line, node = pair[0].start_mark.line + 1, pair[1]
            if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
                line = node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _schema_problems(path: Path, root: Any, exc: Any) -> list[str]:
    out = []
    for err in exc.errors():
        # pydantic adds the member of a union it tried (`str`, `int`, `function-after[...]`): not a place in the file
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p in ("str", "int", "float", "bool", "none")
                                                                          or p.startswith(("function-", "union[")))))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        out.append(f"{path}:{line_of(root, loc)}: {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}")
    return list(dict.fromkeys(out))


def read(path: Path) -> FleetSource:
    """Read and validate a fleet file against the schema; FleetFileError lists every mistake."""
    import yaml
    from pydantic import ValidationError

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}", "give the path of a fleet YAML file") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB", "a fleet file lists models: is this the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", "give a YAML fleet file") from None
    try:
        data = yaml_call(yaml.safe_load, text)
        root = yaml_call(yaml.compose, text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise FleetFileError([f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if not isinstance(data, dict):
        raise FleetFileError([f"{path}:1: (top level): expected a mapping with `models:`"])
    models = data.get("models")
    if isinstance(models, dict):  # YAML keys may be numbers or booleans; names are text
        data = {**data, "models": {str(k): v for k, v in models.items()}}
    try:
        fleet = validate(FleetFile, data)
    except ValidationError as exc:
        raise FleetFileError(_schema_problems(path, root, exc)) from None
    return FleetSource(path, fleet, root)
