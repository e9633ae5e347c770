"""hfrl.service (being built)."""
