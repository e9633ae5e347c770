"""hfrl.datasets (being built)."""
