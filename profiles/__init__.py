"""GPU profiles and model recipes (package data; see servectl.catalog)."""
