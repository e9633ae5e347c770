"""The HTML report of a run: one self-contained file that opens offline.

The report reads only a *run folder* (it imports nothing of hfrl but ``hfrl.errors``), so any tool
that writes the layout below gets a report: ``hfrl run``, ``hfrl demo``, or your own script.

Run-folder layout (format version 1)
------------------------------------
Every file but ``metrics.json`` is optional; a missing part is shown as "not in this run".

``metrics.json`` (required)
    A JSON object with these keys (all optional except ``format``):

    - ``format``: ``"hfrl.run"``; ``format_version``: ``1``.
    - ``run``: flat run metadata (name, created, hfrl_version, seed, source, command, ...).
    - ``alpha``: the chosen blend weight; ``tuning``: ``{estimator, criterion, level, method}`` and
      from a pipeline ``objective``, ``gamma``, ``reason`` (one sentence: why this alpha),
      ``passed_safety``, ``safety_reason``, ``min_propensity``.
    - ``policies``: ``{label: {estimate, std_error, ci_low, ci_high, true_value, true_return}}``,
      the value of each policy by the primary estimator (``true_*`` only from a simulator).
    - ``true_value``: ``{label: exact value}`` of the objective (from a simulator, else null).
    - ``verdict`` (pi' against the logging policy) and ``verdicts`` (``{label: verdict}``, pi'
      against each alternative, paired on the test rows): ``{verdict, difference, ci_low, ci_high,
      reason, ...}``; ``outcome``: one sentence, does pi' beat both of its parents.
    - ``estimators``: a list of ``{policy, estimator, estimate, std_error, ci_low, ci_high,
      true_value}`` rows, every estimator for every policy.
    - ``data``: ``{rows, n_states, n_actions, splits: {name: rows}, events_per_state: {min, median,
      mean, max}, ...}``.
``config.json``
    The resolved configuration that produced the run.
``curves/learning_curve.csv`` (or ``.json``, a list of records)
    Columns ``step`` and ``reward``: the learner's mean reward per window.
``curves/alpha_curve.csv`` (or ``.json``)
    Columns ``alpha``, ``estimate``, ``ci_low``, ``ci_high``: the tuning curve with its band; optional
    ``true_value``, the exact value along alpha (from a simulator), drawn over the band.
``tables/pi.npy``, ``tables/hf.npy``, ``tables/pi_prime.npy`` (or ``.csv`` without a header)
    The ``(n_states, n_actions)`` probability tables of pi, HF and pi'.
``tables/state_counts.npy`` (or ``.csv``)
    Logged events per state; orders the heatmaps' "busiest states" and draws the histogram.
``artifacts/pi.hfrl``, ``artifacts/hf.hfrl``, ``artifacts/pi_prime.hfrl``
    The same tables as loadable ``TabularPolicy`` artifacts (``TabularPolicy.load``).
``report.html``
    Written by :func:`write_report`.

Examples
--------
>>> import json, tempfile, pathlib
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> _ = (run / "metrics.json").write_text(json.dumps({"format": "hfrl.run", "alpha": 0.3}))
>>> write_report(run).name
'report.html'
"""

from __future__ import annotations

from hfrl.report.html import RUN_FORMAT, RUN_FORMAT_VERSION, RunFolder, build_report, read_run, write_report

__all__ = ["RUN_FORMAT", "RUN_FORMAT_VERSION", "RunFolder", "build_report", "read_run", "write_report"]
