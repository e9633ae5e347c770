"""Historical frequencies (being built)."""
