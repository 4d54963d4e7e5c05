"""`--policy`: which value counts when a client sets a sampling field its preset also sets.

Apart from the server (servectl.proxy.app) so that the CLI can offer the choices without loading
the server's libraries."""

from __future__ import annotations

from typing import Literal

Policy = Literal["preset-wins", "client-wins"]
POLICIES: tuple[str, ...] = ("preset-wins", "client-wins")
