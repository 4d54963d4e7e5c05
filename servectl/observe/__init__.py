"""Seeing what vLLM does: `servectl top` (metrics scraped, rates, histogram percentiles) and plots (plan, bench)."""
