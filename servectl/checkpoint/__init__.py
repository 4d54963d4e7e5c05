"""Where a model comes from and what it is: a checkpoint's files read through a source (a local directory
now, a hub repository next), its config as vLLM reads it, and the architecture derived from it, every figure
with its source. Never plans or launches."""
