"""hfrl.learners (being built)."""
