"""Resolving (model, GPU, user flags) into one guarded LaunchSpec."""
