"""servectl: serve quantized models on vLLM with one command."""

__version__ = "0.1.0"
