"""hfrl.ope (being built)."""
