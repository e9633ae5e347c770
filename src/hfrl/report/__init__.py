"""hfrl.report (being built)."""
