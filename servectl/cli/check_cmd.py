"""Commands of this group are added by its owner module (placeholder until then)."""
