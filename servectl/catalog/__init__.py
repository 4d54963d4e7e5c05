"""The catalog: pydantic schemas of GPU profiles, model recipes, presets, patches and diagnosis rules, and loading them from package data."""
