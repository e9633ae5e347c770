"""Per-decision importance sampling for multi-step session logs (being built)."""

SESSION_ESTIMATORS = ("pdis", "wpdis")


def evaluate_sessions(*args, **kwargs):  # placeholder replaced below
    raise NotImplementedError
