"""`servectl pull REPO[@REVISION]`: download what vLLM loads into the Hugging Face cache, after a disk-space check."""

from __future__ import annotations

import click

from servectl.cli import options

from servectl.cli.app import emit_json, info
from servectl.console import plain


@click.command()
@click.argument("repo", metavar="REPO[@REVISION]")
@options.DRY_RUN("Show what would be downloaded and skipped.")
@options.JSON("Keys below.")
def pull(repo: str, dry_run: bool, as_json: bool) -> None:
    """Download a hub model's files vLLM loads into the Hugging Face cache (progress, resume), skipping what it does not
    (.bin/.pth copies, original/, safetensors the index does not name), after checking the disk has room.
    `servectl up REPO` does this itself before starting vLLM. HF_HOME / HF_HUB_CACHE, HF_ENDPOINT and HF_TOKEN apply.

    --json keys: repo, commit, files {path: bytes}, skipped {path: why}, total_bytes, cached_bytes, to_fetch_bytes,
    free_bytes, cache, snapshot (null with --dry-run)."""
    from servectl.checkpoint import download
    from servectl.checkpoint.ref import parse
    from servectl.errors import UserError

    ref = parse(repo)
    if ref is None or ref.kind != "repo":
        raise UserError(f"{repo!r} is not a hub repo id", "e.g. servectl pull Qwen/Qwen3-8B or Qwen/Qwen3-8B@main")
    plan = download.plan(ref)
    free, where = download.preflight(plan) if not dry_run else (None, download.hub_cache())
    doc = {
        "repo": plan.repo,
        "commit": plan.commit,
        "files": plan.files,
        "skipped": plan.skipped,
        "total_bytes": plan.total_bytes,
        "cached_bytes": plan.cached_bytes,
        "to_fetch_bytes": plan.to_fetch_bytes,
        "free_bytes": free,
        "cache": str(where),
        "snapshot": None,
    }
    if not as_json:
        info(
            plain(
                f"{ref.label} at {plan.commit}: {len(plan.files)} files, {plan.total_bytes / 1e9:.2f} GB "
                f"({plan.cached_bytes / 1e9:.2f} GB already cached), {len(plan.skipped)} skipped"
            )
        )
        for path, why in sorted(plan.skipped.items()):
            info(plain(f"  skip {path}: {why}"))
    if dry_run:
        if as_json:
            emit_json(doc)
        return
    snapshot = (
        download.download(plan, quiet=as_json)
        if plan.to_fetch_bytes
        else download.hub_cache() / f"models--{plan.repo.replace('/', '--')}" / "snapshots" / (plan.commit or "")
    )
    doc["snapshot"] = str(snapshot)
    if as_json:
        emit_json(doc)
    else:
        info(plain(f"ready: {snapshot} (vLLM reads it from the cache; `servectl up {ref.label}`)"))
