"""Run the decision service under uvicorn (``hfrl serve`` and ``python -m hfrl.service`` call ``serve``)."""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from hfrl.service.app import API_KEY_ENV, DEFAULT_MAX_BODY_BYTES, create_app
from hfrl.service.log import LogWriterError
from hfrl.service.monitor import MonitorSettings
from hfrl.service.refresh import RefreshSettings

__all__ = ["main", "parse_reward_range", "read_api_key", "run_app", "serve"]


def parse_reward_range(text: str) -> tuple[float, float]:
    """``"0,1"`` -> ``(0.0, 1.0)``; ``ValueError`` naming the option otherwise.

    Examples
    --------
    >>> parse_reward_range("0, 5")
    (0.0, 5.0)
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--reward-range expects LOW,HIGH (two numbers), got {text!r}") from None
    if not low < high:
        raise ValueError(f"--reward-range expects LOW < HIGH, got {text!r}")
    return low, high


def read_api_key(api_key_file: str | PathLike[str] | None = None) -> str | None:
    """The admin key: the first line of ``api_key_file`` when given, else ``$HFRL_API_KEY``, else None.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/key"
    >>> _ = open(path, "w").write("s3cret\\n")
    >>> read_api_key(path)
    's3cret'
    """
    if api_key_file is not None:
        path = Path(api_key_file)
        if not path.is_file():
            raise ValueError(f"--api-key-file {path}: no such file")
        key = path.read_text().strip()
        if not key:
            raise ValueError(f"--api-key-file {path}: the file is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def serve(
    artifact: str | PathLike[str],
    db: str | PathLike[str] = "decisions.sqlite",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_file: str | PathLike[str] | None = None,
    require_key: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    seed: int | None = None,
    log_level: str = "warning",
    challenger: str | PathLike[str] | None = None,
    traffic: float = 0.1,
    auto: bool = False,
    monitor: MonitorSettings | None = None,
    candidates: Sequence[str | PathLike[str]] = (),
    refresh: RefreshSettings | None = None,
    access_log: bool = False,
) -> None:
    """Load ``artifact`` and serve it on ``host:port`` until SIGINT/SIGTERM (then drain the log).

    ``db`` is a SQLite file or a ``postgresql://`` URL; ``challenger`` ... ``refresh`` are
    ``create_app``'s experiment, monitoring and refresh settings. ``log_level`` is uvicorn's
    (``"info"`` logs the start, the URL and the stop); ``access_log`` logs every request at level info.
    """
    key = read_api_key(api_key_file)
    if require_key and key is None:
        raise ValueError(f"--require-key needs a key: set {API_KEY_ENV} or pass --api-key-file")
    app = create_app(
        artifact, db, api_key=key, require_key=require_key, max_body_bytes=max_body_bytes, seed=seed,
        challenger=challenger, traffic=traffic, auto=auto, monitor=monitor, candidates=candidates,
        refresh=refresh,
    )
    run_app(app, host=host, port=port, log_level=log_level, access_log=access_log)


def run_app(app: Any, *, host: str, port: int, log_level: str = "warning", access_log: bool = False) -> None:
    """Run a built app under uvicorn until SIGINT/SIGTERM; the app's lifespan drains the log."""
    import uvicorn

    # the model, FastAPI and pandas are long-lived: keep them out of the collector's full passes,
    # which otherwise pause the event loop for tens of milliseconds on a large heap
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=10
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hfrl.service ARTIFACT [--db PATH_OR_URL] [--host] [--port] [--challenger PATH ...]``."""
    parser = argparse.ArgumentParser(prog="python -m hfrl.service", description="Serve a policy artifact.")
    parser.add_argument("artifact")
    parser.add_argument("--db", default="decisions.sqlite", help="SQLite file or postgresql:// URL.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key-file", default=None)
    parser.add_argument("--require-key", action="store_true")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--challenger", default=None)
    parser.add_argument("--traffic", type=float, default=0.1)
    parser.add_argument("--auto", action="store_true")
    parser.add_argument("--reward-range", default="0,1")
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--guardrail-floor", type=float, default=None)
    parser.add_argument("--event", default="reward")
    parser.add_argument("--candidate", action="append", default=[])
    parser.add_argument("--refresh-every", type=float, default=None)
    parser.add_argument("--refresh-logs", action="append", default=[])
    parser.add_argument("--refresh-out", default=None)
    parser.add_argument("--pi", default=None)
    parser.add_argument("--hf", default=None)
    parser.add_argument("--half-life", default=None)
    parser.add_argument("--retune", action="store_true")
    args = parser.parse_args(argv)
    try:
        monitor = MonitorSettings(level=args.level, reward_range=parse_reward_range(args.reward_range),
                                  event=args.event, guardrail_floor=args.guardrail_floor)
        refresh = RefreshSettings(tuple(args.refresh_logs), args.refresh_every, args.refresh_out, args.pi,
                                  args.hf, args.half_life, args.retune)
        serve(
            args.artifact, args.db, host=args.host, port=args.port, api_key_file=args.api_key_file,
            require_key=args.require_key, max_body_bytes=args.max_body_bytes, seed=args.seed,
            log_level=args.log_level, challenger=args.challenger, traffic=args.traffic, auto=args.auto,
            monitor=monitor, candidates=args.candidate, refresh=refresh,
        )
    except (ValueError, LogWriterError) as exc:  # ArtifactError, a bad key file or db, bad settings
        parser.exit(1, f"error: {exc}\n")
