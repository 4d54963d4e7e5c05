"""Known vLLM patches (package data; see servectl.vllmenv.patches)."""
