"""Base of the pydantic models that hold what servectl reads from outside itself (hardware tools'
output, diagnoses of vLLM logs): unknown keys are errors, instances are immutable.

The catalog's schemas are dataclasses instead (servectl.catalog.base): they are unpickled on every
command, and keeping pydantic off that path is most of a command's start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
