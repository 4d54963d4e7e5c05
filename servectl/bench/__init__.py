"""`servectl bench`: vLLM's own serving benchmark under a fixed protocol, shareable result files, comparisons."""
