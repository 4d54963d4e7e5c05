"""Where a model comes from and what it is: a local checkpoint directory or a Hugging Face hub repo read through
one small interface (`files.Source` / `source.CheckpointSource`: a few small files by name, the safetensors headers),
its config as vLLM reads it and the architecture derived from it (`derive`: every figure with its source), and the
recipe derived from them (quantization, parsers, sampling defaults, hazards), every choice with its reason.

Below `spec` and `plan` in the pipeline: it plans and launches nothing; `plan.any_model` turns a derived
recipe into per-GPU-profile settings."""
