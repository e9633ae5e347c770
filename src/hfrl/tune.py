"""Choosing alpha (being built)."""
