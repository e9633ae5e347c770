"""The HTML report: reading run folders, rendering, and a real headless-Chromium check."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfrl.errors import ArtifactError
from hfrl.report import build_report, read_run, write_report

PLOT_IDS = {
    "plot-learning-curve",
    "plot-alpha-curve",
    "plot-heatmap-pi",
    "plot-heatmap-hf",
    "plot-heatmap-pi-prime",
    "plot-estimators",
    "plot-events-per-state",
}


def make_run_folder(root: Path, n_states: int = 30, n_actions: int = 12, seed: int = 0) -> Path:
    """A complete run folder with made-up but well-formed contents."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    (run / "curves").mkdir(parents=True)
    (run / "tables").mkdir()
    pi = rng.dirichlet(np.full(n_actions, 0.3), size=n_states)
    hf = rng.dirichlet(np.full(n_actions, 2.0), size=n_states)
    alpha = 0.4
    for name, table in {"pi": pi, "hf": hf, "pi_prime": (1 - alpha) * pi + alpha * hf}.items():
        np.save(run / "tables" / f"{name}.npy", table)
    np.save(run / "tables" / "state_counts.npy", rng.integers(0, 500, n_states).astype(float))
    steps = np.arange(1, 51) * 1000
    pd.DataFrame({"step": steps, "reward": 0.5 - 0.4 * np.exp(-steps / 10000)}).to_csv(
        run / "curves" / "learning_curve.csv", index=False
    )
    alphas = np.linspace(0, 1, 21)
    estimate = 0.3 + 0.2 * alphas - 0.25 * alphas**2
    pd.DataFrame({"alpha": alphas, "estimate": estimate, "ci_low": estimate - 0.03,
                  "ci_high": estimate + 0.03}).to_csv(run / "curves" / "alpha_curve.csv", index=False)
    policies = {}
    estimators = []
    for i, label in enumerate(["logging", "HF only", "pi only", "pi'", "optimal"]):
        truth = 0.3 + 0.02 * i
        policies[label] = {"estimate": truth + 0.005, "std_error": 0.01, "ci_low": truth - 0.015,
                           "ci_high": truth + 0.025, "true_value": truth}
        for j, est in enumerate(["ips", "snips", "dr"]):
            estimators.append({"policy": label, "estimator": est, "estimate": truth + 0.003 * j,
                               "std_error": 0.01, "ci_low": truth - 0.02, "ci_high": truth + 0.02,
                               "boot_ci_low": truth - 0.021, "boot_ci_high": truth + 0.019,
                               "true_value": truth})
    metrics = {
        "format": "hfrl.run", "format_version": 1,
        "run": {"name": "test <run>", "seed": seed, "source": "simulator"},
        "alpha": alpha,
        "tuning": {"estimator": "snips", "criterion": "estimate", "level": 0.95},
        "policies": policies,
        "estimators": estimators,
        "data": {"rows": 1000, "n_states": n_states, "n_actions": n_actions,
                 "splits": {"train": 600, "validation": 200, "test": 200},
                 "events_per_state": {"min": 0, "median": 30.0, "mean": 33.3, "max": 90}},
    }
    metrics["verdict"] = {"verdict": "ship", "difference": 0.06, "ci_low": 0.01, "ci_high": 0.11,
                          "reason": "the interval excludes 0"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps({"seed": seed, "learner": {"name": "q_learning"}}))
    return run


# ---------------------------------------------------------------------------- reading and rendering
def test_read_run_reads_every_part(tmp_path):
    run = read_run(make_run_folder(tmp_path))
    assert set(run.tables) == {"pi", "hf", "pi_prime"}
    assert run.tables["pi"].shape == (30, 12)
    assert list(run.alpha_curve.columns) == ["alpha", "estimate", "ci_low", "ci_high"]
    assert len(run.learning_curve) == 50
    assert run.state_counts.shape == (30,)
    assert run.config["learner"]["name"] == "q_learning"


def test_report_is_self_contained_and_has_every_section(tmp_path):
    run = make_run_folder(tmp_path)
    page = build_report(run)
    # plotly.js inlined exactly once; no external script, stylesheet or CDN reference.
    assert page.count("<script type=\"text/javascript\">") == 1
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    for plot_id in PLOT_IDS:
        assert f'id="{plot_id}"' in page
    assert "test &lt;run&gt;" in page and "test <run>" not in page  # metadata is escaped
    assert "chosen alpha = 0.4" in page
    assert "bootstrap CI low" in page
    assert "Resolved configuration" in page
    assert "Deployment verdict for pi' against the logging policy: ship" in page


def test_report_tells_why_this_alpha_and_whether_pi_prime_beats_both_parents(tmp_path):
    run = make_run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["tuning"].update(objective="return", reason="alpha = 0.4 has the highest estimated return")
    metrics["verdicts"] = {"pi only": {"verdict": "ship", "difference": 0.2, "ci_low": 0.1, "ci_high": 0.3},
                           "HF only": {"verdict": "no evidence", "difference": 0.0, "ci_low": -0.1,
                                       "ci_high": 0.1}}
    metrics["outcome"] = "pi' does not beat both of its parents on the test rows"
    (run / "metrics.json").write_text(json.dumps(metrics))
    curve = pd.read_csv(run / "curves" / "alpha_curve.csv")
    curve.assign(true_value=curve["estimate"] + 0.01).to_csv(run / "curves" / "alpha_curve.csv", index=False)
    page = build_report(run)
    assert "Why this alpha:</b> alpha = 0.4 has the highest estimated return" in page
    assert "pi&#x27; does not beat both of its parents" in page
    assert "exact value (known in simulation)" in page and "Discounted return of a session" in page
    assert "<td>HF only</td><td>no evidence</td>" in page
def test_numbers_read_for_people_and_the_summary_says_why(tmp_path):
    run_dir = make_run_folder(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["data"]["rows"] = 200000
    metrics["tuning"]["validation_ci"] = [2.3395843489482733, 2.4412]
    metrics["data"]["events_per_state"]["max"] = 21360.0
    metrics["verdict"].update(baseline_value=1.2, candidate_value=1.26)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    page = build_report(run_dir)
    assert "<td>200,000</td>" in page and "<td>21,360</td>" in page
    assert "<td>[2.34, 2.44]</td>" in page and "2.3395843489482733" not in page.split("<pre>")[0]
    assert "2e+05" not in page and "e+04" not in page
    assert "Why this alpha:</b> alpha = 0.4 (pi&#x27; = 0.6 pi + 0.4 HF)" in page
    assert "relative uplift of +5% [+0.833%, +9.17%]" in page
    summary = page.split("<h2>Summary</h2>")[1].split("</section>")[0]
    assert summary.count("[+0.01, +0.11]") == 1  # the verdict's interval, once
    assert '<th title="The confidence interval' in page and '<th title="Expected reward' in page


def test_busiest_states_order_the_heatmaps(tmp_path):
    run_dir = make_run_folder(tmp_path)
    counts = np.zeros(30)
    counts[[7, 3]] = [100, 50]
    np.save(run_dir / "tables" / "state_counts.npy", counts)
    page = build_report(run_dir)
    match = re.search(r'"y":\["s(\d+)","s(\d+)"', page)
    assert match and match.groups() == ("7", "3")


def test_partial_run_folder_reports_missing_parts(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"alpha": 0.2}))
    page = build_report(tmp_path)
    assert "Learning curve: not in this run." in page
    assert "Policy heatmaps: not in this run." in page


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda run: (run / "metrics.json").unlink(), "metrics.json: missing"),
        (lambda run: (run / "metrics.json").write_text("{nope"), "metrics.json: not valid JSON"),
        (lambda run: (run / "curves" / "alpha_curve.csv").write_text("alpha,estimate\n0,1\n"),
         "alpha_curve.csv: missing column(s) ['ci_low', 'ci_high']"),
        (lambda run: (run / "curves" / "learning_curve.csv").write_text("step,reward\n1,0.5\n2,x\n"),
         "learning_curve.csv: row 1 has a missing or non-numeric value"),
        (lambda run: np.save(run / "tables" / "hf.npy", np.ones((3, 3)) / 3), "the tables differ in shape"),
        (lambda run: (run / "metrics.json").write_text('{"format": "other"}'), "expected 'hfrl.run'"),
    ],
)
def test_malformed_run_folder_is_refused_with_the_file_named(tmp_path, mutate, message):
    run = make_run_folder(tmp_path)
    mutate(run)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        read_run(run)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="no such run folder"):
        read_run(tmp_path / "absent")


# ---------------------------------------------------------------------------- real browser
def _decode_png(data: bytes) -> np.ndarray:
    """A tiny PNG decoder (8-bit RGB/RGBA, non-interlaced), enough for Chromium screenshots."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1:start + 1 + stride]
        if kind == 0:
            current = bytearray(line)
        elif kind == 1:  # Sub: a running sum per channel, vectorised
            pixels = np.frombuffer(line, dtype=np.uint8).reshape(width, channels).astype(np.int64)
            current = bytearray((np.cumsum(pixels, axis=0) & 0xFF).astype(np.uint8).tobytes())
        elif kind == 2:  # Up
            up = np.frombuffer(bytes(previous), np.uint8).astype(np.int16)
            summed = (np.frombuffer(line, np.uint8).astype(np.int16) + up) & 0xFF
            current = bytearray(summed.astype(np.uint8).tobytes())
        else:  # Average and Paeth depend on the decoded left neighbour: plain Python over bytes
            current = bytearray(line)
            for x in range(stride):
                left = current[x - channels] if x >= channels else 0
                up = previous[x]
                if kind == 3:
                    predictor = (left + up) >> 1
                else:
                    up_left = previous[x - channels] if x >= channels else 0
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                current[x] = (current[x] + predictor) & 0xFF
        out[y] = np.frombuffer(bytes(current), dtype=np.uint8)
        previous = current
    return out.reshape(height, width, channels)[:, :, :3]


def _encode_png(image: np.ndarray) -> bytes:
    """Encode RGB pixels with every PNG filter type in turn (row y uses filter y % 5)."""

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

    height, width, _ = image.shape
    flat = image.reshape(height, width * 3).astype(int)
    raw = bytearray()
    for y in range(height):
        kind, row = y % 5, flat[y]
        up = flat[y - 1] if y else np.zeros_like(row)
        out = []
        for x in range(row.size):
            a = row[x - 3] if x >= 3 else 0
            c = up[x - 3] if x >= 3 else 0
            predictor = [0, a, up[x], (a + up[x]) // 2, paeth(a, up[x], c)][kind]
            out.append((row[x] - predictor) & 0xFF)
        raw += bytes([kind, *out])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(
        b"IEND", b"")


def test_png_decoder_handles_every_filter():
    image = np.random.default_rng(0).integers(0, 256, size=(11, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode_png(_encode_png(image)), image)


_PROBE = """<script>
window.__probeErrors = [];
window.addEventListener('error', function (e) {
  __probeErrors.push('error: ' + (e.message || e.type)); }, true);
window.addEventListener('unhandledrejection', function (e) { __probeErrors.push('rejection: ' + e.reason); });
(function () { var original = console.error; console.error = function () {
  __probeErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  return original.apply(console, arguments); }; })();
window.addEventListener('load', function () { setTimeout(function () {
  var plots = Array.prototype.map.call(document.querySelectorAll('.plotly-graph-div'), function (d) {
    var r = d.getBoundingClientRect();
    return {id: d.id, x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height,
            drawn: !!d.querySelector('svg.main-svg')}; });
  var pre = document.createElement('pre'); pre.id = 'probe-result';
  pre.textContent = JSON.stringify({errors: __probeErrors, plots: plots,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(pre); }, 300); });
</script>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def make_pipeline_run(root: Path) -> Path:
    """A real run folder, from a small pipeline on the Recommendation simulator."""
    from hfrl.pipeline import run_pipeline

    config = {"source": {"n_rows": 4000}, "learner": {"n_steps": 5000}, "output": {"dir": str(root / "run")}}
    return run_pipeline(config).out_dir


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (make system-deps installs it)")
@pytest.mark.parametrize("make_run", [make_run_folder, make_pipeline_run], ids=["synthetic", "pipeline"])
def test_report_renders_in_headless_chromium(tmp_path, make_run):
    binary = _chromium()
    page = write_report(make_run(tmp_path)).read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    width, height = 1400, 6000  # taller than the page: one run gives the DOM probe and the screenshot
    shot = tmp_path / "shot.png"
    run = _run_chromium(binary, tmp_path / "profile", f"--window-size={width},{height}",
                        f"--screenshot={shot}", "--dump-dom", probed.as_uri())
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', run.stdout, re.S)
    assert match, f"the page did not finish loading; chromium said: {run.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    console_messages = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console_messages == []
    plots = {p["id"]: p for p in result["plots"]}
    assert set(plots) == PLOT_IDS
    assert all(p["drawn"] for p in plots.values()), plots

    image = _decode_png(shot.read_bytes())
    assert image.shape[:2] == (height, width)
    assert result["height"] <= height, "the page is taller than the screenshot; raise the window height"
    for plot_id, box in plots.items():
        x0, y0 = int(box["x"]), int(box["y"])
        area = image[y0:y0 + int(box["h"]), x0:x0 + int(box["w"])]
        assert area.size > 0, plot_id
        background = np.array([255, 255, 255])
        ink = np.abs(area.astype(int) - background).sum(axis=2) > 30
        colours = len(np.unique(area.reshape(-1, 3), axis=0))
        assert ink.mean() > 0.01 and colours >= 8, f"{plot_id} looks blank ({ink.mean():.4f}, {colours})"
