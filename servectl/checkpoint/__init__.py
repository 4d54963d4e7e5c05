"""Where a model comes from and what it is: a local checkpoint directory or a Hugging Face hub repo read through
one small interface (`files.Source`: a few small files by name, the safetensors headers), and the recipe
derived from them (quantization, parsers, sampling defaults, hazards), every choice with its reason.

Below `spec` and `plan` in the pipeline: it plans and launches nothing; `plan.any_model` turns a derived
recipe into per-GPU-profile settings."""
