"""Base of every catalog schema and the value types they share.

A schema is a frozen, keyword-only dataclass, not a pydantic model: the validated catalog is cached
and unpickled on every command, and plain dataclasses keep pydantic (its import and its schema
builds, most of a command's start-up) off that path. pydantic still validates every file that is
read (`validate`): it reads the field types, their bounds (`Annotated[int, Ge(1)]`) and
`__pydantic_config__`, and calls `__post_init__`, whose ValueError becomes a validation error at
that record's location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, dataclass_transform


SCHEMA_VERSION = 1


Vendor = Literal["nvidia", "amd", "cpu"]


# awq-int4: AutoAWQ 4-bit; int4 / int8: compressed-tensors integer weights (W4A16, W8A8/W8A16) that are not GPTQ.
Quantization = Literal["nvfp4", "mxfp4", "fp8", "gptq-int8", "gptq-int4", "awq-int4", "int4", "int8", "bf16", "fp16"]


TorchDtype = Literal["float32", "bfloat16", "float16"]


T = TypeVar("T")


def _bound(kind: str) -> Any:
    def make(value: Any) -> Any:
        import annotated_types

        return getattr(annotated_types, kind)(value)

    make.__name__ = make.__qualname__ = kind
    return make


# Bounds of the schemas' fields, as the annotated_types objects pydantic reads. The annotations are
# strings (PEP 563) that only pydantic evaluates, when it validates a file; these make the objects
# then, so reading the cached catalog never imports annotated_types (a twentieth of a start-up).
Ge, Gt, Le, MinLen = (_bound(kind) for kind in ("Ge", "Gt", "Le", "MinLen"))


@dataclass_transform(frozen_default=True, kw_only_default=True)
def schema(cls: type[T]) -> type[T]:
    """A catalog record: immutable, fields by keyword only, unknown keys refused when validated."""
    cls.__pydantic_config__ = {"extra": "forbid"}  # type: ignore[attr-defined]  # read by pydantic only
    return dataclass(frozen=True, kw_only=True)(cls)


CATALOG_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DOTTED_KEY = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


def require_match(value: str | None, pattern: re.Pattern[str], field: str) -> None:
    """Refuse a value outside its pattern (raised from __post_init__: pydantic reports it where it stands)."""
    if value is not None and not pattern.match(value):
        raise ValueError(f"{field} {value!r} does not match {pattern.pattern}")


_ADAPTERS: dict[type, Any] = {}  # one pydantic TypeAdapter per schema (building one is most of a validation)


def _adapter(model: type) -> Any:
    if model not in _ADAPTERS:
        from pydantic import TypeAdapter

        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


def validate(model: type[T], data: Any) -> T:
    """`data` (parsed YAML or JSON) as a `model`; raises pydantic.ValidationError with every problem's location."""
    return _adapter(model).validate_python(data)
