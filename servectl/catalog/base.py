"""Base of every catalog schema and the value types they share."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


SCHEMA_VERSION = 1


Vendor = Literal["nvidia", "amd", "cpu"]


Quantization = Literal["nvfp4", "mxfp4", "fp8", "gptq-int8", "gptq-int4", "bf16", "fp16"]


TorchDtype = Literal["float32", "bfloat16", "float16"]


class Strict(BaseModel):
    """Base of every catalog model: unknown keys are errors, instances are immutable."""

    # defer_build: a schema is built on first validation, not at import, so commands that only read a
    # cached catalog (servectl.catalog.load) never pay for building every schema.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
