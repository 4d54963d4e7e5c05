"""Known vLLM patches (package data; see servectl.patches)."""
