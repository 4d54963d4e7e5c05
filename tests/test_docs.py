"""The documentation site builds with `mkdocs build --strict` (no broken link, anchor or nav entry), and its
generated reference is complete: every command and every option of every command (the click group walked,
lazily loaded commands included), every catalog schema field, profile, recipe, diagnosis rule and vLLM
behaviour appears in the built pages."""

from __future__ import annotations

import dataclasses
import html
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_generate"))

import reference  # noqa: E402  (docs/_generate/reference.py: the generator walks the same commands)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text as a reader sees it (tags dropped, entities decoded)."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def sections(site: Path, page: str) -> dict[str, str]:
    """Heading id -> the HTML text from that heading to the next heading, decoded."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    marks = list(re.finditer(r'<h[1-6][^>]*\bid="([^"]+)"', raw))
    return {
        m.group(1): html.unescape(
            re.sub(r"<[^>]+>", " ", raw[m.start() : marks[i + 1].start() if i + 1 < len(marks) else len(raw)])
        )
        for i, m in enumerate(marks)
    }


def test_every_command_and_option_is_in_the_reference(site):
    found = sections(site, "reference/commands")
    commands = list(reference.walk_commands())
    assert len(commands) > 20  # the lazily loaded commands were walked, not only the group
    missing = []
    for path, cmd, _ctx in commands:
        section = found.get(reference.anchor(path))
        if section is None or " ".join(path) not in section:
            missing.append(" ".join(path))
            continue
        for param in reference.visible_options(cmd):
            names = [param.human_readable_name] if param.param_type_name == "argument" else [*param.opts, *param.secondary_opts]
            missing += [f"{' '.join(path)} {name}" for name in names if name not in section]
    assert not missing, missing


def test_the_reference_lists_lazily_loaded_subcommands(site):
    from servectl.cli.app import COMMANDS

    text = page_text(site, "reference/commands")
    for name in COMMANDS:
        assert f"servectl {name}" in text
    assert "servectl patch apply" in text and "--dry-run" in text


def test_every_catalog_field_is_described(site):
    text = page_text(site, "reference/catalog-schema")
    missing = []
    for _title, rel in reference.SCHEMA_MODULES:
        module = importlib.import_module(rel.removesuffix(".py").replace("/", "."))
        for name, _doc, fields in reference.schema_classes(ROOT / rel):
            cls = getattr(module, name)
            declared = {f.name for f in dataclasses.fields(cls)}
            assert declared == {f[0] for f in fields}, name  # the generator read every field the schema has
            assert name in text
            if not name.endswith("File"):  # a file's top-level list is described by its item class
                missing += [f"{name}.{f}" for f, _t, _d, comment in fields if not comment]
    assert not missing, missing  # a field without its description would show an empty cell


def test_catalog_diagnosis_and_versions_pages_are_complete(site):
    from servectl.catalog import versions
    from servectl.catalog.load import load_catalog
    from servectl.verify.diagnose import load_file

    catalog = page_text(site, "reference/catalog")
    cat = load_catalog()
    assert all(name in catalog for name in [*cat.gpus, *cat.models])
    rules = page_text(site, "reference/diagnosis-rules")
    assert [r.id for r in load_file().rules if r.id not in rules] == []
    table = page_text(site, "reference/vllm-versions")
    assert [b.key for b in versions.TABLE if b.key not in table] == []
    from servectl.catalog import dashboards, metrics

    names = [n.name for c in metrics.CONCEPTS for n in c.names] + [c.key for c in metrics.CONCEPTS]
    assert [n for n in names if n not in table] == []
    assert [d.file for d in dashboards.DASHBOARDS if d.file not in table] == []


def test_markdown_in_help_text_is_shown_as_written():
    """Help text holds `<served>`-style placeholders and `*`: the reference shows them, not as HTML tags or emphasis."""
    assert "&lt;" not in reference.md_text("`<served>-<preset>`")
    assert reference.md_text("a <served> b *c*") == "a &lt;served&gt; b \\*c\\*"


def test_the_option_vocabulary_page_lists_every_shared_option_and_its_commands(site):
    from servectl.cli.options import HOMONYMS, VOCABULARY

    text = " ".join(page_text(site, "reference/options").split())
    for concept in VOCABULARY.values():
        assert concept.option in text and concept.title in text, concept.option
        assert all(alias in text for alias in [*concept.aliases, *concept.flag_aliases])
    assert all(name in text for name in HOMONYMS)
    assert "`plan`, `render`, `up`" in text or "plan , render , up" in text  # --preset's commands, as a reader sees them


def test_readme_is_short_and_names_the_two_commands():
    """The README is the front door: at most ~150 lines, with the main job and the tests (the fast tier beside the
    full suite) on its first screen; everything else lives in docs/. Its links into docs/ point at pages that exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    first_screen = "\n".join(readme.splitlines()[:30])
    for command in ("scripts/demo", "scripts/test", '-m "not server"'):
        assert command in first_screen, command
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
