"""hfrl.envs (being built)."""
