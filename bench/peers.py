"""Peer libraries for the benchmarks (Vowpal Wabbit, Open Bandit Pipeline), kept apart from hfrl.

The peers live in their own venv, ``bench/.venv-peers`` (or ``$HFRL_PEER_VENV``), created from
``bench/requirements-peers.txt`` on first use; they are never hfrl dependencies. A benchmark runs a
peer as that venv's python on its own script with ``--peer KIND DATA.npz SETTINGS-JSON``: the data go
through an ``.npz`` file, the answer comes back as the last line of stdout (JSON), and the peer's
process never imports hfrl (``PYTHONPATH`` is dropped from its environment). This module imports
only the standard library and numpy, so both sides can import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import venv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEER_VENV = Path(os.environ.get("HFRL_PEER_VENV", HERE / ".venv-peers"))
PEER_REQUIREMENTS = HERE / "requirements-peers.txt"
OBP = "obp==0.5.7"


def peer_python() -> tuple[str | None, str]:
    """Path of the peer venv's python (created on first use), or None and why not."""
    python = PEER_VENV / "bin" / "python"
    try:
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(PEER_VENV)
        check = subprocess.run([str(python), "-c", "import vowpalwabbit, obp"], capture_output=True)
        if check.returncode != 0:
            pip = [str(python), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, "-r", str(PEER_REQUIREMENTS)], check=True, capture_output=True,
                           timeout=1800)
            # obp declares Python < 3.11 and torch == 1.12; what it imports is in the requirements
            subprocess.run([*pip, "--no-deps", "--ignore-requires-python", OBP], check=True,
                           capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not prepare {PEER_VENV}: {exc}"
    return str(python), ""


def run_peer(script: str, kind: str, data: dict, **settings) -> dict:
    """Run ``script --peer kind`` in the peer venv on ``data`` (arrays); its JSON answer, or why not."""
    python, why = peer_python()
    if python is None:
        return {"skipped": why}
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "data.npz")
        np.savez(path, **data)
        done = subprocess.run([python, script, "--peer", kind, path, json.dumps(settings)],
                              capture_output=True, text=True, timeout=7200, env=environment)
    if done.returncode != 0:
        return {"failed": done.stderr.strip()[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])
