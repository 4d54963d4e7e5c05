"""The validated derived recipes servectl keeps in the user cache: keyed by the exact data validated, bounded."""

from __future__ import annotations

import os

import pytest

from checkpoint_dirs import checkpoint_dir
from servectl.catalog.load import disk_cached
from servectl.plan.any_model import resolve_model


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "servectl"


def test_a_changed_checkpoint_is_validated_again_not_served_from_the_cache(own_cache, tmp_path):
    first = resolve_model(str(checkpoint_dir("qwen3-8b", tmp_path / "a")), profiles=["rtx-5090"]).recipe
    assert len(list((own_cache / "derived").glob("*.pickle"))) == 1
    again = resolve_model(str(checkpoint_dir("qwen3-8b", tmp_path / "b")), profiles=["rtx-5090"]).recipe
    assert again.architecture == first.architecture  # same config: same recipe (its path differs, so a new entry)
    longer = resolve_model(
        str(checkpoint_dir("qwen3-8b", tmp_path / "c", max_position_embeddings=8192)), profiles=["rtx-5090"]
    ).recipe
    assert longer.architecture.max_position_embeddings == 8192 != first.architecture.max_position_embeddings
    assert len(list((own_cache / "derived").glob("*.pickle"))) == 3


def test_the_derived_cache_keeps_a_bounded_number_of_entries(own_cache):
    folder = own_cache / "derived"
    for i in range(7):
        before = set(folder.glob("*.pickle"))
        assert disk_cached([f"entry {i}"], lambda i=i: {"n": i}, dict, b"schema", folder="derived", keep=3) == {"n": i}
        (new,) = set(folder.glob("*.pickle")) - before
        os.utime(new, (1000 + i, 1000 + i))  # written in this order, whatever the file system's clock resolution
    assert len(list(folder.glob("*.pickle"))) == 3
    # a kept entry is served as written; a pruned one is built again
    assert disk_cached(["entry 6"], lambda: {"n": "rebuilt"}, dict, b"schema", folder="derived", keep=3) == {"n": 6}
    assert disk_cached(["entry 0"], lambda: {"n": "rebuilt"}, dict, b"schema", folder="derived", keep=3) == {"n": "rebuilt"}


def test_settings_are_derived_only_for_the_profiles_asked_for(own_cache, tmp_path):
    path = str(checkpoint_dir("qwen3-8b", tmp_path))
    every = resolve_model(path).recipe
    one = resolve_model(path, profiles=["rtx-pro-6000-blackwell"]).recipe
    assert set(one.profiles) == {"rtx-pro-6000-blackwell"} < set(every.profiles)
    assert one.profiles["rtx-pro-6000-blackwell"] == every.profiles["rtx-pro-6000-blackwell"]
    assert [c.setting for c in one.derivation.choices if c.setting.startswith("profiles.")] == ["profiles.rtx-pro-6000-blackwell"]
