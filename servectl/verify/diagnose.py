"""vLLM log text -> the failing process's root error, and the cause, remedy and fixing flags when a rule knows it.

The rules are data (profiles/diagnose.yaml, schema servectl.catalog.diagnose_schema); this module finds the root
error and matches the rules. Pure, except `free_port` (asks the OS whether a port is free) and `hints_for`
(reads the config.json of the model directory the log names): the edges the callers use.

Root error: the last exception the log shows that is not a wrapper. vLLM re-raises a start-up failure as
"RuntimeError: Engine core initialization failed. See root cause above." (vllm/v1/engine/utils.py),
"Engine process failed to start" (older api_server.py) or "WorkerProc initialization failed"
(vllm/v1/executor/multiproc_executor.py); pydantic prints a config validator's ValueError as "Value error, <msg>"
under "ValidationError: N validation error(s) for <Config>"; argparse prints "vllm serve: error: <msg>" and exits 2;
uvicorn logs "ERROR:    [Errno 98] error while attempting to bind on address (...)".
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from servectl.catalog.diagnose_schema import DiagnoseFile, DiagnosisRule, ModelFamily
from servectl.catalog.load import _read, parse_yaml_model
from servectl.errors import UserError
from servectl.fsutil import read_json_capped
from servectl.hardware.preflight import utilization_that_fits
from servectl.verify.report import Diagnosis, Evidence, RootError

# ---------------------------------------------------------------------------------------------- root error

# A log line's prefixes, outermost first: docker compose's "vllm-1  | ", a timestamp (kubectl --timestamps, CI),
# "(APIServer pid=1)", "(EngineCore_DP0 pid=2)", "(VllmWorker rank=0 pid=3)", "(RayWorkerWrapper pid=4, ip=...)",
# "[rank0]:", "ERROR 12-01 15:00:01 [core.py:123]" (vLLM >= 0.8) or "ERROR 12-01 15:00:01 core.py:123]" (older).
_PREFIX = re.compile(
    r"^(?:\x1b\[[\d;]*m)*(?:[\w.-]+\s+\|\s)?(?:\[?\d{4}-\d\d-\d\dT[\d:.]+Z?\]?\s+)?"
    r"(?:\s*\([\w.\s]*?(?:pid|rank)=[^)]*\)\s*)?(?:\[rank\d+\]:\s?)?"
    r"(?:(?:ERROR|WARNING|INFO|DEBUG|CRITICAL)\s+(?:\d{4}-)?\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?\s+\[?[\w.]+:\d+\]\s?)?"
)
_EXCEPTION = re.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.)*(?:[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure)))(?::\s?(?P<msg>.*))?$"
)
_ARGPARSE = re.compile(r"^(?:vllm(?: serve)?|[\w.-]+\.py): error: (?P<msg>.+)$")
_PYDANTIC_HEAD = re.compile(r"^\d+ validation errors? for \w+$")
_PYDANTIC_VALUE = re.compile(r"^\s*(?:Value|Assertion) error, (?P<msg>.*?)(?:\s*\[type=[^\]]*\])?\s*$")
_PYDANTIC_OTHER = re.compile(r"^\s+(?P<msg>.+?)\s*\[type=(?P<kind>[\w.]+), input_value=(?P<input>.*?)(?:, input_type=\w+)?\]\s*$")
_UVICORN = re.compile(r"^ERROR:\s+(?P<msg>\[Errno \d+\].*)$")
# vllm/v1/executor/multiproc_executor.py re-raises a worker's error inside this text: keep the worker's message
_WORKER_WRAPPED = re.compile(r"^Worker failed with error '(?P<inner>.*)', please check the stack trace above")
WRAPPERS = re.compile(
    r"Engine core initialization failed|Engine process failed to start|WorkerProc initialization failed"
    r"|EngineDeadError|EngineGenerateError|See (?:the )?root cause above"
    r"|^(?:SystemExit|KeyboardInterrupt|(?:asyncio\.(?:exceptions\.)?)?CancelledError)\b"
)


def log_lines(text: str) -> list[str]:
    """A log's lines as a pager numbers them (split at newlines only), each as a terminal shows it: after its
    last carriage return (progress bars rewrite their line with \r). servectl.fsutil.read_log counts the same way."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r").rsplit("\r", 1)[-1] if "\r" in ln else ln for ln in lines]


def strip_prefix(line: str) -> str:
    """A log line without vLLM's process / level / time / source prefix."""
    return _PREFIX.sub("", line, count=1).rstrip()


def _pydantic(lines: list[str], i: int, head: str, first_line: int = 1) -> tuple[str, str, int]:
    """The error(s) under pydantic's "N validation error(s) for Config" header: a validator's own ValueError, else
    "Config.field: constraint (input: value)", the fields the user set first (vLLM derives others from them)."""
    model = head.rsplit(" for ", 1)[-1].strip()
    field, found = None, []
    for j in range(i + 1, min(i + 40, len(lines))):
        text = strip_prefix(lines[j])
        if m := _PYDANTIC_VALUE.match(text):
            return "ValueError", m["msg"], j + first_line
        if m := _PYDANTIC_OTHER.match(text):
            where = f"{model}.{field}" if field else model
            found.append((f"'{field}':", f"{where}: {m['msg']} (input: {m['input']})", j + first_line))
        elif text and not text[0].isspace() and not text.startswith("For further"):
            if _EXCEPTION.match(text) or text.startswith("Traceback"):
                break
            field = text.strip()
    if not found:
        return "ValidationError", head, i + first_line
    log = "\n".join(lines)
    found.sort(key=lambda f: f[0] not in log)  # a field in vLLM's "non-default args" first, else vLLM's order
    return "ValidationError", "; ".join(f[1] for f in found), found[0][2]


def exceptions(log_text: str, first_line: int = 1) -> list[RootError]:
    """Every exception, argparse error and uvicorn bind error the log shows, in order (`first_line`: the
    number of the text's first line in the whole log, when the text is a log's tail)."""
    lines = log_lines(log_text)
    out: list[RootError] = []
    for i, raw in enumerate(lines):
        text = strip_prefix(raw)
        if not text or text[0].isspace():
            continue
        if m := _ARGPARSE.match(text):
            msg = m["msg"]
            head = msg.rsplit(": ", 1)[-1]
            if _PYDANTIC_HEAD.match(head):  # a JSON config flag that pydantic rejected
                msg = f"{msg.rsplit(': ', 1)[0]}: {_pydantic(lines, i, head, first_line)[1]}"
            out.append(RootError(type="ArgumentError", message=msg, line=i + first_line))
        elif m := _UVICORN.match(text):
            out.append(RootError(type="OSError", message=m["msg"], line=i + first_line))
        elif m := _EXCEPTION.match(text):
            typ, msg = m["type"], (m["msg"] or "").strip()
            if typ.endswith("ValidationError") and _PYDANTIC_HEAD.match(msg):
                typ, msg, line = _pydantic(lines, i, msg, first_line)
                out.append(RootError(type=typ, message=msg, line=line))
            else:
                if wrapped := _WORKER_WRAPPED.match(msg):
                    msg = wrapped["inner"]
                out.append(RootError(type=typ, message=msg, line=i + first_line))
    return out


def root_error(log_text: str, first_line: int = 1) -> RootError | None:
    """The failing process's final exception that is not a wrapper; None when the log shows none."""
    real = [e for e in exceptions(log_text, first_line) if not WRAPPERS.search(f"{e.type}: {e.message}")]
    return real[-1] if real else None


# ---------------------------------------------------------------------------------------------- computations


def _num(v: str | None) -> float:
    if v is None or str(v).strip() in ("", "?"):
        raise ValueError("missing value")
    return float(str(v).replace(",", "").replace("_", ""))


def _known(xs: Iterable[str | None]) -> list[str]:
    return [x for x in xs if x not in (None, "", "?")]


def _names(text: str | None) -> list[str]:
    """Names from a printed list: "{ a,b,c }", "a, b, c", "['a', 'b']", "'a', 'b' or 'c'"."""
    return [n for n in re.split(r"[\s,{}\[\]'\"()]+", text or "") if n and n not in ("or", "and")]


def free_port(port: str | None) -> str:
    """The first port after `port` that is free now (a bind on 127.0.0.1 fails for a port taken on any address)."""
    start = int(_num(port))
    for candidate in range(start + 1, min(start + 50, 65536)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        return str(candidate)
    raise ValueError("no free port nearby")


def _pick(choices: str | None, bad: str | None, *preferred: str | None) -> str:
    """A name from the printed choices: the first preferred one listed (the recipe's parser, then the model
    family's), else the listed name closest to the bad one. With no list printed, the first preferred."""
    names = _names(choices)
    for group in preferred:
        for name in _names(group):
            if not names or name in names:
                return name
    close = difflib.get_close_matches(bad or "", names, n=1, cutoff=0.6)
    if close:
        return close[0]
    raise ValueError("no choice fits")


def _divisor_at_most(n: str | None, *limits: str | None) -> str:
    """The largest divisor of n no larger than any of the limits (tensor parallel size, GPU count)."""
    total, limit = int(_num(n)), int(min(_num(x) for x in _known(limits)))
    return str(max(d for d in range(1, max(1, min(total, limit)) + 1) if total % d == 0))


def _kv_bytes(gib: str | None) -> str:
    """--kv-cache-memory-bytes holding `gib` (vLLM prints 2 decimals: up to 0.005 GiB more), in whole 16 MiB."""
    mib = (_num(gib) + 0.01) * 1024
    return f"{int(math.ceil(mib / 16) * 16)}M"


def _mib_up(nbytes: str | None) -> str:
    """A byte count as --kv-cache-memory-bytes in whole MiB, rounded up."""
    return f"{int(math.ceil(_num(nbytes) / 2**20))}M"


def _cuda_of(found: str | None) -> str:
    """The CUDA version of torch's driver number: 12080 -> 12.8."""
    n = int(_num(found))
    return f"{n // 1000}.{(n % 1000) // 10}"


def _gfx_override(gfx: str | None) -> str:
    """HSA_OVERRIDE_GFX_VERSION for a consumer RDNA target: the nearest target ROCm ships kernels for."""
    g = (gfx or "").lower().removeprefix("gfx")
    for prefix, version in (("103", "10.3.0"), ("110", "11.0.0"), ("115", "11.0.0"), ("120", "12.0.0")):
        if g.startswith(prefix):
            return version
    raise ValueError(f"no stand-in target for gfx{g}")


def _bound(kind: str | None, limit: str | None) -> str:
    """The closest value a pydantic bound allows: "greater than 0" -> 1, "less than or equal to 1" -> 1."""
    n = _num(limit)
    step = 1 if n.is_integer() else 0.01
    key = (kind or "").replace(" ", "_")
    value = {"greater_than": n + step, "less_than": n - step}.get(key, n)
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


# Named computations a rule's `compute` may call (arguments: value names or quoted literals).
COMPUTATIONS: dict[str, Callable[..., str]] = {
    "utilization_that_fits": lambda free, total: f"{utilization_that_fits(_num(free), _num(total)):.2f}",
    "half": lambda n: str(max(1, math.floor(_num(n) / 2))),
    "either": lambda *xs: _known(xs)[0],
    "max_of": lambda *xs: str(int(max(_num(x) for x in _known(xs)))),
    "divisor_at_most": _divisor_at_most,
    "pick": _pick,
    "closest": lambda bad, choices: _pick(choices, bad),
    "first": lambda choices: _names(choices)[0],
    "kv_bytes": _kv_bytes,
    "mib_up": _mib_up,
    "free_port": free_port,
    "cuda_of": _cuda_of,
    "gfx_override": _gfx_override,
    "flag": lambda field: "--" + _known([field])[0].strip().replace("_", "-"),
    "optional": lambda before, value, after="": f"{before}{value}{after}" if _known([value]) else "",
    "join": lambda *parts: "".join(parts) if len(_known(parts)) == len(parts) else _known([])[0],
    "bound": _bound,
}

_CALL = re.compile(r"^\s*(?P<fn>\w+)\((?P<args>.*)\)\s*$")


def _evaluate(expr: str, values: dict[str, str | None]) -> str:
    m = _CALL.match(expr)
    if not m or m.group("fn") not in COMPUTATIONS:
        raise UserError(f"diagnose rule computation {expr!r} is not one of {sorted(COMPUTATIONS)}")
    args = [a[1:-1] if a[:1] in "'\"" else values.get(a) for a in (x.strip() for x in m.group("args").split(",")) if a]
    return COMPUTATIONS[m.group("fn")](*args)


# ---------------------------------------------------------------------------------------------- rules data


@functools.lru_cache(maxsize=4)
def _load(key: str) -> DiagnoseFile:
    text, src = _read("diagnose.yaml")
    doc = parse_yaml_model(text, src, DiagnoseFile)
    for r in doc.rules:
        for rx in [r.pattern, *r.requires, *r.unless, r.after or "", r.not_after or "", *r.extract.values()]:
            try:
                re.compile(rx)
            except re.error as exc:
                raise UserError(f"{src}: rule {r.id}: bad regex {rx!r}: {exc}") from None
        for expr in r.compute.values():
            m = _CALL.match(expr)
            if not m or m.group("fn") not in COMPUTATIONS:
                raise UserError(f"{src}: rule {r.id}: computation {expr!r} is not one of {sorted(COMPUTATIONS)}")
    return doc


def load_file() -> DiagnoseFile:
    """The validated rules file (rules and model families)."""
    from servectl.catalog.load import profiles_dir

    return _load(str(profiles_dir()))


# ---------------------------------------------------------------------------------------------- hints


@dataclass(frozen=True)
class Hints:
    """What the caller knows beyond the log: the recipe's parsers, the model's names, the GPUs."""

    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    model: str = ""  # repo, path, architecture, model_type: text the model families are matched against
    gpus: int | None = None
    kv_context_bytes: int | None = None  # KV cache one request of max-model-len needs (the planner's layout)
    gfx_target: str | None = None  # AMD gfx target from detection (vLLM does not log it)


# Where a vLLM log names the model: servectl's "# servectl: ... vllm serve MODEL" line, the non-default args,
# the engine config, vLLM's "Resolved architecture", an unsupported-architecture error.
_MODEL_NAMES = re.compile(
    r"Resolved architecture: (\S+)|'model(?:_tag)?': '([^']+)'|\bmodel='([^']+)'|Model architectures \[([^\]]+)\]"
    r"|\bvllm serve (\S+)|--model[= ](\S+)|architectures=\[([^\]]+)\]"
)


def _names_text(log_text: str, head: str) -> str:
    """Where to look for the model's names in a large log: its start (the command, vLLM's args) and its end
    (an unsupported-architecture error); all of a small one."""
    return f"{head}\n{log_text[-256 * 1024 :]}" if head else log_text


def model_names(log_text: str) -> list[str]:
    return [g.strip("'\" ") for m in _MODEL_NAMES.finditer(log_text) for g in m.groups() if g]


def hints_for(
    log_text: str,
    recipes: Iterable = (),
    *,
    recipe=None,
    model: str | None = None,
    gpus: int | None = None,
    gfx_target: str | None = None,
) -> Hints:
    """Hints for a log: the recipe given, else the catalog recipe whose architecture and sizes the config.json of
    the model directory the log names has (its parsers; its layout sizes the KV cache), and the model's names."""
    names = [model] if model else []
    names += model_names(log_text)
    config: dict = {}
    for name in list(names)[:8]:
        try:
            config = read_json_capped(Path(name) / "config.json", 4 * 2**20)
        except (OSError, ValueError, UserError):
            continue
        if not isinstance(config, dict):
            config = {}
            continue
        names += [*(config.get("architectures") or []), str(config.get("model_type") or "")]
        break
    if recipe is None and config:
        archs = config.get("architectures") or []
        recipe = next(
            (
                r
                for r in recipes
                if r.architecture.hf_architecture in archs
                and all(
                    config.get(k) in (None, v)
                    for k, v in (("hidden_size", r.architecture.hidden_size), ("num_hidden_layers", r.architecture.num_layers))
                )
            ),
            None,
        )
    if recipe is None:
        return Hints(model=" ".join(names), gpus=gpus, gfx_target=gfx_target)
    names += [recipe.name, recipe.repo or "", recipe.architecture.hf_architecture]
    return Hints(
        recipe.parsers.tool_call,
        recipe.parsers.reasoning,
        " ".join(names),
        gpus,
        kv_context_bytes(recipe.architecture, log_text),
        gfx_target,
    )


def kv_context_bytes(arch, log_text: str) -> int | None:
    """KV cache bytes one request of the log's max-model-len needs, with vLLM's null block: the planner's layout
    with what the log shows vLLM chose (CPU build, float32 SSM state, 'align' Mamba blocks, TP, KV dtype)."""
    from servectl.plan.planner import layout

    length = re.search(r"(?:'max_model_len': |Using max model len |max_seq_len=)(\d+)", log_text)
    if not length:
        return None
    cpu = bool(re.search(r"CPU KV cache|GiB for KV cache on node|\[cpu_worker\.py|cpu_model_runner", log_text))
    if arch.linear is not None and "Reset SSM cache type to float32" in log_text:
        arch = replace(arch, linear=replace(arch.linear, ssm_dtype="float32"))
    tp = re.search(r"'tensor_parallel_size': (\d+)", log_text)
    dtype = re.search(r"'kv_cache_dtype': '([^']+)'", log_text)
    lay = layout(
        arch,
        tp=int(tp.group(1)) if tp else 1,
        kv_cache_dtype=dtype.group(1) if dtype else "auto",
        cpu=cpu,
        prefix_caching="Mamba cache mode is set to 'align'" in log_text,
    )
    return (lay.blocks_per_request(int(length.group(1))) + 1) * lay.block_bytes


def _family(families: list[ModelFamily], text: str) -> ModelFamily | None:
    return next((f for f in families if text and re.search(f.match, text, re.I)), None)


# ---------------------------------------------------------------------------------------------- matching


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "?"


# vLLM's INFO / WARNING lines describe a start that goes on (a warning can quote an error's text, e.g. the
# max_model_len check with VLLM_ALLOW_LONG_MAX_MODEL_LEN=1): failure rules do not take their evidence there.
_NOT_A_FAILURE = re.compile(r"^(?:\x1b\[[\d;]*m)*(?:[\w.-]+\s+\|\s)?(?:\s*\([^)]*\)\s*)?(?:INFO|WARNING|DEBUG)\s+\d\d-\d\d ")


def _match(
    rule: DiagnosisRule, lines: list[str], text: str, root: RootError | None, first_line: int = 1, lines_text: str | None = None
) -> tuple[int, dict] | None:
    """(evidence line, named groups) of the rule in this log: the root error when it matches, else the first line."""
    if any(not re.search(rx, text) for rx in rule.requires) or any(re.search(rx, text) for rx in rule.unless):
        return None
    rx = re.compile(rule.pattern)
    if root is not None and not rule.after and not rule.not_after:
        if m := rx.search(f"{root.type}: {root.message}"):
            return root.line, m.groupdict()
    # one scan of the whole text first (line anchors per line): a rule no line matches costs one regex pass,
    # not one per line (a diagnosis of a log tail of megabytes)
    if lines and not re.search(rule.pattern, "\n".join(lines) if lines_text is None else lines_text, re.M):
        return None
    after = re.compile(rule.after) if rule.after else None
    not_after = re.compile(rule.not_after) if rule.not_after else None
    seen_after = seen_not = False
    first = None
    for i, line in enumerate(lines):
        m = rx.search(line)
        if m and not rule.hazard and _NOT_A_FAILURE.match(line):
            m = None
        if m and (after is None or seen_after) and not seen_not:
            if root is not None and i + first_line == root.line:
                return i + first_line, m.groupdict()
            first = first or (i + first_line, m.groupdict())
        if after is not None and after.search(line):
            seen_after = True
        if not_after is not None and not_after.search(line):
            seen_not = True
    return first


def _values(rule: DiagnosisRule, groups: dict, text: str, base: dict) -> dict[str, str | None]:
    values: dict[str, str | None] = {**base, **groups}
    for name, erx in rule.extract.items():
        em = re.search(erx, text)
        values[name] = em.group(1) if em else values.get(name)
    for name, expr in rule.compute.items():
        try:
            values[name] = _evaluate(expr, values)
        except (ValueError, TypeError, ZeroDivisionError, IndexError):
            values[name] = None
    return values


def _render(
    rule: DiagnosisRule, values: dict, line: int, lines: list[str], root: RootError | None, first_line: int = 1
) -> Diagnosis:
    fill = _Default({k: ("?" if v is None else v) for k, v in values.items()})
    fix = [f.format_map(fill) for f in rule.fix]
    return Diagnosis(
        rule=rule.id,
        cause=rule.cause.format_map(fill),
        remedy=rule.remedy.format_map(fill),
        fix=[f for f in fix if "?" not in re.split(r"[\s=]+", f)],
        evidence=Evidence(line=line, text=lines[line - first_line].strip()[:500]),
        root_error=root,
    )


def diagnose(
    log_text: str, hints: Hints | None = None, doc: DiagnoseFile | None = None, *, first_line: int = 1, head: str = ""
) -> list[Diagnosis]:
    """Every cause the rules find, most relevant first: those matching the root error, then the others by priority
    (one per evidence line); hazards and wrappers only when the log shows no root error. For a large log,
    `log_text` is its tail (starting at line `first_line`) and `head` its start: lines are matched in the tail,
    the whole-log conditions (requires, unless, extracted values, model names) in both."""
    doc = doc or load_file()
    hints = hints or Hints()
    lines = log_lines(log_text)
    root = root_error(log_text, first_line)
    whole = f"{head}\n{log_text}" if head else log_text
    family = _family(doc.families, " ".join([hints.model, *model_names(_names_text(log_text, head))]))
    base = {
        "recipe_tool_call": hints.tool_call_parser,
        "recipe_reasoning": hints.reasoning_parser,
        "family_tool_call": ",".join(family.tool_call) if family else None,
        "family_reasoning": ",".join(family.reasoning) if family else None,
        "gpus": str(hints.gpus) if hints.gpus else None,
        "kv_context_bytes": str(hints.kv_context_bytes) if hints.kv_context_bytes else None,
        "gfx_target": hints.gfx_target,
    }
    ranked = []
    for rule in doc.rules:
        if (rule.hazard or rule.wrapper) and root is not None:
            continue
        if (hit := _match(rule, lines, whole, root, first_line, log_text)) is None:
            continue
        line, groups = hit
        d = _render(rule, _values(rule, groups, whole, base), line, lines, root, first_line)
        ranked.append((rule.wrapper, root is None or line != root.line, -rule.priority, line, d))
    ranked.sort(key=lambda t: t[:4])
    chosen = [t[-1] for t in ranked if not t[0]] or [t[-1] for t in ranked]
    seen: set[int | None] = set()
    out = []
    for d in chosen:
        at = d.evidence.line if d.evidence is not None else None  # every rule's diagnosis names its line
        if at not in seen:
            seen.add(at)
            out.append(d)
    return out


def explain(log_text: str, hints: Hints | None = None, *, first_line: int = 1, head: str = "") -> Diagnosis:
    """The answer for a failed start: the most relevant cause, or the root error alone when no rule matched."""
    found = diagnose(log_text, hints, first_line=first_line, head=head)
    if found:
        return found[0]
    return Diagnosis(cause=None, remedy=None, fix=[], evidence=None, rule=None, root_error=root_error(log_text, first_line))


def text_lines(d: Diagnosis, limit: int = 400) -> list[str]:
    """The diagnosis as `servectl diagnose` and a failed `servectl up` print it (plain text)."""

    def cut(s: str) -> str:
        return s if len(s) <= limit else s[:limit] + " ..."

    out = []
    if d.root_error is not None:
        out.append(f"root error (log line {d.root_error.line}): {d.root_error.type}: {cut(d.root_error.message)}")
    if d.rule is None:
        out.append("no known cause matched: act on the root error above" if d.root_error else "no error found in the log")
        return out
    out += [f"cause: {d.cause}", f"  remedy: {d.remedy}"]
    if d.fix:
        out.append(f"  fix: {' '.join(d.fix)}")
    if d.evidence is not None and (d.root_error is None or d.evidence.line != d.root_error.line):
        out.append(f"  evidence (log line {d.evidence.line}): {cut(d.evidence.text)}")
    out.append(f"  rule: {d.rule}")
    return out


def explain_log(
    log_text: str,
    model: str | None = None,
    *,
    gpus: int | None = None,
    gfx_target: str | None = None,
    first_line: int = 1,
    head: str = "",
) -> Diagnosis:
    """`servectl diagnose`: the hints from the catalog, the recipe `model` names, else the recipe whose model the
    log shows (a `model` that is no recipe name still gives the model family)."""
    from servectl.catalog.load import load_catalog

    cat = load_catalog()
    recipe = cat.models.get(model) if model else None
    return explain(
        log_text,
        hints_for(_names_text(log_text, head), cat.models.values(), recipe=recipe, model=model, gpus=gpus, gfx_target=gfx_target),
        first_line=first_line,
        head=head,
    )


def explain_file(source, what: str, model: str | None = None) -> Diagnosis:
    """`servectl diagnose FILE|-` for a log of any size: read once as a stream (servectl.fsutil.read_log: its head
    and its tail, memory bounded), diagnosed with the tail's real line numbers."""
    from servectl.fsutil import read_log

    excerpt = read_log(source, what)
    return explain_log(excerpt.tail, model, first_line=excerpt.tail_first_line, head=excerpt.head)
