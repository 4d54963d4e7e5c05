"""Per-user directories (XDG base directories), resolved at call time so tests can redirect them."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def state_dir() -> Path:
    """Deployment records and server logs."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "servectl"


def cache_dir() -> Path:
    """Generated tiny models, downloaded wheels, calibration data."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "servectl"


def data_dir() -> Path:
    """vLLM environments made by `servectl bootstrap`."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "servectl"


def config_file() -> Path:
    """The user's settings file (optional)."""
    override = os.environ.get("SERVECTL_CONFIG")
    if override:
        return Path(override)
    return _xdg("XDG_CONFIG_HOME", ".config") / "servectl" / "config.yaml"


def recipes_dir() -> Path:
    """The user's own model recipes (`servectl models add`), one YAML file per recipe."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "servectl" / "recipes"
