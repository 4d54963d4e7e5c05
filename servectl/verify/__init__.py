"""Checks against a live endpoint, output sanity, diagnosis of failed starts, validation of renders with the real tools."""
