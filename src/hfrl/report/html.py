"""Read a run folder and render it as one self-contained HTML page (plotly.js inlined once)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hfrl.errors import ArtifactError

__all__ = ["RUN_FORMAT", "RUN_FORMAT_VERSION", "RunFolder", "build_report", "read_run", "write_report"]

RUN_FORMAT = "hfrl.run"
RUN_FORMAT_VERSION = 1
TABLE_NAMES = {"pi": "pi (learned)", "hf": "HF (historical frequency)", "pi_prime": "pi' (blended)"}
MAX_HEATMAP_STATES = 20
MAX_HEATMAP_ACTIONS = 15


@dataclass
class RunFolder:
    """What a run folder holds, read into memory (missing parts are ``None``/empty)."""

    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any] | None = None
    learning_curve: pd.DataFrame | None = None
    alpha_curve: pd.DataFrame | None = None
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    state_counts: np.ndarray | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc


def _read_curve(folder: Path, name: str, columns: tuple[str, ...]) -> pd.DataFrame | None:
    csv_path, json_path = folder / "curves" / f"{name}.csv", folder / "curves" / f"{name}.json"
    if csv_path.is_file():
        path = csv_path
        try:
            frame = pd.read_csv(path)
        except (ValueError, pd.errors.ParserError) as exc:
            raise ArtifactError(f"{path}: not a readable CSV ({exc})") from exc
    elif json_path.is_file():
        path = json_path
        frame = pd.DataFrame(_read_json(path))
    else:
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing column(s) {missing}; expected {list(columns)}")
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ArtifactError(f"{path}: row {row} has a missing or non-numeric value in {list(columns)}")
    if name == "alpha_curve" and "true_value" in frame.columns:  # the exact value, from a simulator
        values["true_value"] = pd.to_numeric(frame["true_value"], errors="coerce")
    return values


def _read_array(folder: Path, name: str, ndim: int) -> np.ndarray | None:
    npy, csv = folder / "tables" / f"{name}.npy", folder / "tables" / f"{name}.csv"
    try:
        if npy.is_file():
            path, array = npy, np.load(npy, allow_pickle=False)
        elif csv.is_file():
            path, array = csv, np.loadtxt(csv, delimiter=",", ndmin=ndim)
        else:
            return None
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"{npy if npy.is_file() else csv}: unreadable table ({exc})") from exc
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != ndim or not np.isfinite(array).all():
        raise ArtifactError(f"{path}: expected a finite {ndim}-D array, got shape {array.shape}")
    return array


def read_run(run_dir: str | PathLike[str]) -> RunFolder:
    """Read a run folder (see the layout in :mod:`hfrl.report`).

    Raises
    ------
    ArtifactError
        When the folder or ``metrics.json`` is missing or a file is malformed (the message names it).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run / "metrics.json").write_text(json.dumps({"alpha": 0.25}))
    >>> read_run(run).metrics["alpha"], read_run(run).tables
    (0.25, {})
    """
    folder = Path(run_dir)
    metrics_path = folder / "metrics.json"
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: no such run folder")
    if not metrics_path.is_file():
        raise ArtifactError(f"{metrics_path}: missing; a run folder needs metrics.json")
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict):
        raise ArtifactError(f"{metrics_path}: expected a JSON object, got {type(metrics).__name__}")
    if metrics.get("format", RUN_FORMAT) != RUN_FORMAT:
        raise ArtifactError(f"{metrics_path}: format is {metrics.get('format')!r}, expected {RUN_FORMAT!r}")
    config_path = folder / "config.json"
    run = RunFolder(
        path=folder,
        metrics=metrics,
        config=_read_json(config_path) if config_path.is_file() else None,
        learning_curve=_read_curve(folder, "learning_curve", ("step", "reward")),
        alpha_curve=_read_curve(folder, "alpha_curve", ("alpha", "estimate", "ci_low", "ci_high")),
        state_counts=_read_array(folder, "state_counts", 1),
    )
    for name in TABLE_NAMES:
        table = _read_array(folder, name, 2)
        if table is not None:
            run.tables[name] = table
    shapes = {name: t.shape for name, t in run.tables.items()}
    if len(set(shapes.values())) > 1:
        raise ArtifactError(f"{folder / 'tables'}: the tables differ in shape {shapes}")
    return run


# ---------------------------------------------------------------------------- figures
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_TEMPLATE = "plotly_white"


def _figure_html(figure: Any, div_id: str, height: int = 380) -> str:
    figure.update_layout(template=_TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    inner = figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG)
    return f'<div class="plot" data-plot="{div_id}">{inner}</div>'


def _missing(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}: not in this run.</p>'


def _learning_curve(run: RunFolder) -> str:
    import plotly.graph_objects as go

    if run.learning_curve is None or run.learning_curve.empty:
        return _missing("Learning curve")
    curve = run.learning_curve
    figure = go.Figure(go.Scatter(x=curve["step"], y=curve["reward"], mode="lines", name="mean reward"))
    figure.update_layout(title="Learning curve: mean reward per window", xaxis_title="environment step",
                         yaxis_title="mean reward")
    return _figure_html(figure, "plot-learning-curve")


def _alpha_curve(run: RunFolder) -> str:
    import plotly.graph_objects as go

    if run.alpha_curve is None or run.alpha_curve.empty:
        return _missing("Alpha curve")
    curve = run.alpha_curve.sort_values("alpha")
    tuning = run.metrics.get("tuning", {})
    level = tuning.get("level", 0.95)
    band_x = np.concatenate([curve["alpha"], curve["alpha"][::-1]])
    band_y = np.concatenate([curve["ci_high"], curve["ci_low"][::-1]])
    figure = go.Figure([
        go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor="rgba(31,119,180,0.2)", mode="none",
                   name=f"{level:.0%} confidence band", hoverinfo="skip"),
        go.Scatter(x=curve["alpha"], y=curve["estimate"], mode="lines", name="estimate",
                   line={"color": "rgb(31,119,180)"}),
    ])
    if "true_value" in curve.columns and curve["true_value"].notna().any():
        figure.add_trace(go.Scatter(x=curve["alpha"], y=curve["true_value"], mode="lines",
                                    name="exact value (known in simulation)",
                                    line={"color": "black", "dash": "dot"}))
    alpha = run.metrics.get("alpha")
    if alpha is not None:
        figure.add_vline(x=float(alpha), line_dash="dash", line_color="crimson",
                         annotation_text=f"chosen alpha = {float(alpha):.3g}",
                         annotation_position="top right" if float(alpha) < 0.5 else "top left")
    estimator = tuning.get("estimator", "")
    what = "discounted return" if tuning.get("objective") == "return" else "value per decision"
    figure.update_layout(title=f"{what.capitalize()} of pi' by alpha ({estimator.upper()} on validation)",
                         xaxis_title="alpha (weight on HF)", yaxis_title=f"estimated {what}")
    reason = tuning.get("reason")
    why = f"<p class='note'>Why this alpha: {html.escape(str(reason))}</p>" if reason else ""
    return _figure_html(figure, "plot-alpha-curve") + why


def _heatmap_axes(run: RunFolder) -> tuple[np.ndarray, np.ndarray]:
    """The busiest states (by logged events, else by id) and the top actions over them."""
    shape = next(iter(run.tables.values())).shape
    counts = run.state_counts
    if counts is not None and counts.shape == (shape[0],):
        states = np.argsort(-counts, kind="stable")[:MAX_HEATMAP_STATES]
    else:
        states = np.arange(min(shape[0], MAX_HEATMAP_STATES))
    mass = sum(table[states].sum(axis=0) for table in run.tables.values())
    actions = np.sort(np.argsort(-mass, kind="stable")[:MAX_HEATMAP_ACTIONS])
    return states, actions


def _heatmaps(run: RunFolder) -> str:
    import plotly.graph_objects as go

    if not run.tables:
        return _missing("Policy heatmaps")
    states, actions = _heatmap_axes(run)
    parts = []
    for name, title in TABLE_NAMES.items():
        if name not in run.tables:
            parts.append(_missing(title))
            continue
        values = run.tables[name][np.ix_(states, actions)]
        figure = go.Figure(go.Heatmap(
            z=values, x=[f"a{a}" for a in actions], y=[f"s{s}" for s in states], zmin=0.0, zmax=1.0,
            colorscale="Viridis", colorbar={"title": "prob."},
            hovertemplate="state %{y}<br>action %{x}<br>probability %{z:.3f}<extra></extra>",
        ))
        figure.update_layout(title=title, xaxis_title="action", yaxis_title="state",
                             yaxis={"autorange": "reversed", "type": "category"},
                             xaxis={"type": "category"})
        parts.append(_figure_html(figure, f"plot-heatmap-{name.replace('_', '-')}", height=420))
    note = (f"<p class='note'>{len(states)} busiest states (by logged events) x {len(actions)} actions "
            "with the most probability mass over them.</p>")
    return note + '<div class="grid3">' + "".join(parts) + "</div>"


def _estimator_rows(run: RunFolder) -> list[dict[str, Any]]:
    rows = run.metrics.get("estimators")
    if rows:
        return [dict(r) for r in rows]
    primary = run.metrics.get("tuning", {}).get("estimator", "estimate")
    return [dict(v, policy=k, estimator=primary) for k, v in run.metrics.get("policies", {}).items()]


def _estimators(run: RunFolder) -> str:
    import plotly.graph_objects as go

    rows = [r for r in _estimator_rows(run) if r.get("estimate") is not None]
    if not rows:
        return _missing("Estimates")
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    estimators = list(dict.fromkeys(r["estimator"] for r in rows))
    figure = go.Figure()
    for estimator in estimators:
        mine = [r for r in rows if r["estimator"] == estimator]
        est = np.array([float(r["estimate"]) for r in mine])
        high = np.array([float(r.get("ci_high", r["estimate"])) for r in mine])
        low = np.array([float(r.get("ci_low", r["estimate"])) for r in mine])
        figure.add_trace(go.Scatter(
            x=[r["policy"] for r in mine], y=est, mode="markers", name=estimator.upper(),
            error_y={"type": "data", "symmetric": False, "array": high - est, "arrayminus": est - low},
        ))
    truth = {}
    for label, values in run.metrics.get("policies", {}).items():
        if values.get("true_value") is not None:
            truth[label] = float(values["true_value"])
    for r in rows:
        if r.get("true_value") is not None:
            truth.setdefault(r["policy"], float(r["true_value"]))
    if truth:
        figure.add_trace(go.Scatter(x=list(truth), y=list(truth.values()), mode="markers", name="exact truth",
                                    marker={"symbol": "diamond-open", "size": 14, "color": "black"}))
    level = run.metrics.get("tuning", {}).get("level", 0.95)
    figure.update_layout(title=f"Estimated value of each policy with {level:.0%} confidence intervals",
                         scattermode="group", xaxis={"categoryorder": "array", "categoryarray": policies},
                         yaxis_title="value per decision")
    return _figure_html(figure, "plot-estimators", height=420) + _estimates_table(rows)


def _fmt(value: Any) -> str:
    """A cell for people: counts with thousands separators, other numbers to 3 significant digits,
    a pair of numbers as an interval."""
    from hfrl.report.wording import count, interval, number

    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | np.integer):
        return count(value)
    if isinstance(value, float | np.floating):
        whole = np.isfinite(value) and float(value).is_integer() and abs(value) >= 1000
        return count(value) if whole else number(value)
    if _is_interval(value):
        return interval(*value)
    return html.escape(str(value))


def _is_interval(value: Any) -> bool:
    """Two numbers (or missing ends) in a list: an interval such as ``validation_ci``."""
    return isinstance(value, list | tuple) and len(value) == 2 and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value)


# What each column means, one hover away (the header's title).
COLUMN_HINTS = {
    "estimate": "Expected reward per decision under the policy, estimated from the logged rows.",
    "CI": "The confidence interval of the estimate: the range the value lies in at the stated level.",
    "std. error": "The estimate's standard error (the spread of the estimate over resampled logs).",
    "true value": "The exact expected reward per decision, from the simulator's model (simulated data).",
    "true return": "The exact discounted session return under the policy (simulated data).",
    "estimator": "The off-policy estimator: IPS, SNIPS (self-normalized), DM (reward model), DR (both).",
}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def hint(name: str) -> str:
        key = next((k for k in COLUMN_HINTS if k in name), None)
        return f' title="{html.escape(COLUMN_HINTS[key])}"' if key else ""

    head = "".join(f"<th{hint(h)}>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _estimates_table(rows: list[dict[str, Any]]) -> str:
    header = ["policy", "estimator", "estimate", "std. error", "CI low", "CI high"]
    keys = ["estimate", "std_error", "ci_low", "ci_high"]
    if any(r.get("boot_ci_low") is not None for r in rows):
        header += ["bootstrap CI low", "bootstrap CI high"]
        keys += ["boot_ci_low", "boot_ci_high"]
    header.append("true value")
    keys.append("true_value")
    body = [[r["policy"], r["estimator"], *(r.get(k) for k in keys)] for r in rows]
    return _table(header, body)


def _data_summary(run: RunFolder) -> str:
    import plotly.graph_objects as go

    data = run.metrics.get("data", {})
    facts = [[k, v] for k, v in data.items() if not isinstance(v, dict | list)]
    for key in ("splits", "events_per_state"):
        for k, v in (data.get(key) or {}).items():
            facts.append([f"{key}: {k}", v])
    parts = [_table(["quantity", "value"], facts) if facts else _missing("Data summary")]
    if run.state_counts is not None and run.state_counts.size:
        figure = go.Figure(go.Histogram(x=run.state_counts, nbinsx=40, name="states"))
        figure.update_layout(title="Logged events per state", xaxis_title="events in the state",
                             yaxis_title="number of states")
        parts.append(_figure_html(figure, "plot-events-per-state", height=320))
    return "".join(parts)


def _metadata(run: RunFolder) -> str:
    meta = dict(run.metrics.get("run", {}))
    if "alpha" in run.metrics:
        meta["chosen alpha"] = run.metrics["alpha"]
    for k, v in run.metrics.get("tuning", {}).items():
        meta[f"tuning {k}"] = v
    rows = [[k, v if not isinstance(v, dict | list) or _is_interval(v) else json.dumps(v)]
            for k, v in meta.items()]
    parts = [_table(["field", "value"], rows) if rows else _missing("Run metadata")]
    notes = run.metrics.get("warnings") or []
    if notes:
        items = "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
        parts.append(f"<p>Warnings raised during the run:</p><ul class='warnings'>{items}</ul>")
    if run.config is not None:
        config = html.escape(json.dumps(run.config, indent=2, sort_keys=True))
        parts.append(f"<details><summary>Resolved configuration</summary><pre>{config}</pre></details>")
    return "".join(parts)


def _headline(run: RunFolder) -> str:
    policies = run.metrics.get("policies", {})
    if not policies:
        return ""
    from hfrl.report.wording import alpha_sentence, verdict_sentence

    tuning = run.metrics.get("tuning", {})
    level = float(tuning.get("level", 0.95))
    simulated = any(v.get("true_value") is not None or v.get("true_return") is not None
                    for v in policies.values())
    rows = [[label, v.get("estimate"), [v.get("ci_low"), v.get("ci_high")]]
            + ([v.get("true_value"), v.get("true_return")] if simulated else [])
            for label, v in policies.items()]
    estimator = tuning.get("estimator", "")
    what = ("Discounted return of a session" if tuning.get("objective") == "return"
            else "Value per decision")
    page = (f"<p>{what} on the evaluation split by {html.escape(estimator.upper())}"
            + (", with the exact truth from the simulator" if simulated else "") + ".</p>"
            + _table(["policy", "estimate", f"{level:.0%} CI"]
                     + (["true value", "true return"] if simulated else []), rows))
    why = tuning.get("reason")
    if not why and "alpha" in run.metrics and tuning.get("criterion"):
        curve = run.alpha_curve.to_dict(orient="records") if run.alpha_curve is not None else None
        why = alpha_sentence(float(run.metrics["alpha"]), tuning["criterion"], estimator or "snips", level,
                             curve)
    if why:
        page += f"<p class='why'><b>Why this alpha:</b> {html.escape(str(why))}</p>"
    verdict = run.metrics.get("verdict")
    if isinstance(verdict, dict) and verdict.get("verdict"):
        unit = "per session" if tuning.get("objective") == "return" else "per decision"
        sentence = verdict_sentence(verdict, level, unit=unit).split(": ", 1)[-1]
        page += (f"<p class='verdict'><b>Deployment verdict for pi' against the logging policy: "
                 f"{html.escape(str(verdict['verdict']))}</b> &mdash; {html.escape(sentence)}</p>")
    if tuning.get("safety_reason"):
        safety = html.escape(str(tuning["safety_reason"]))
        page += f"<p>Safety test on rows alpha was not chosen on: {safety}</p>"
    if run.metrics.get("outcome"):
        page += f"<p><b>{html.escape(str(run.metrics['outcome']))}</b></p>"
    return page + _alternatives(run.metrics.get("verdicts"), level)


def _alternatives(verdicts: Any, level: float) -> str:
    """pi' against each alternative (the logging policy, pi alone, HF alone), paired on the same rows."""
    if not isinstance(verdicts, dict) or not verdicts:
        return ""
    rows = [[label, v.get("verdict"), v.get("difference"), [v.get("ci_low"), v.get("ci_high")]]
            for label, v in verdicts.items() if isinstance(v, dict)]
    return ("<p>pi' against every alternative, paired on the same test rows (does the blend beat both "
            "of its parents?):</p>"
            + _table(["pi' against", "verdict", "difference", f"{level:.0%} CI"], rows))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.grid3 { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; }
.plot { min-height: 300px; } .missing, .note { color: #777; font-style: italic; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
"""


def build_report(run_dir: str | PathLike[str]) -> str:
    """The report of a run folder as one HTML string (plotly.js inlined, no network needed).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run / "metrics.json").write_text(json.dumps({"run": {"name": "demo"}}))
    >>> page = build_report(run)
    >>> page.startswith("<!DOCTYPE html>") and "cdn" not in page.split("<script")[1][:200].lower()
    True
    """
    from plotly.offline import get_plotlyjs

    run = read_run(run_dir)
    name = run.metrics.get("run", {}).get("name") or run.path.name
    sections = [
        ("Summary", _headline(run)),
        ("Learning curve", _learning_curve(run)),
        ("Choosing alpha", _alpha_curve(run)),
        ("Policies: pi, HF and pi'", _heatmaps(run)),
        ("Estimators side by side", _estimators(run)),
        ("Data summary", _data_summary(run)),
        ("Run metadata", _metadata(run)),
    ]
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections
                   if content)
    # "</script" cannot appear inside an inline script; plotly.js has none, but guard anyway.
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>hfrl report: {html.escape(str(name))}</title><style>{_CSS}</style>"
        f"<script type=\"text/javascript\">{plotly_js}</script></head><body>"
        f"<h1>hfrl report: {html.escape(str(name))}</h1>"
        "<p>pi' = (1 - alpha) &middot; pi + alpha &middot; HF: a learned policy fine-tuned toward the "
        "historical frequency of what users did.</p>"
        f"{body}</body></html>\n"
    )


def write_report(run_dir: str | PathLike[str], out: str | PathLike[str] | None = None) -> Path:
    """Write ``report.html`` (or ``out``) for a run folder and return its path.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (run / "metrics.json").write_text(json.dumps({"alpha": 0.5}))
    >>> write_report(run).stat().st_size > 1_000_000  # plotly.js is inlined
    True
    """
    page = build_report(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
