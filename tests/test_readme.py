"""The README runs as written: its Python examples each on their own, and the whole walk-through (the
command-line session, the Python blocks and the service session against a real server) in order, in
one scratch folder holding a copy of ``examples/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import hfrl

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
ID = re.compile(r'"decision_id":"([0-9a-f]+)"')


def test_readme_has_python_examples():
    assert BLOCKS, "README.md lost its Python example"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert capsys.readouterr().out.strip(), "each README example prints what it shows"


@dataclass
class Step:
    """One command of a console block (continuation lines joined) and the output the README shows."""

    command: str
    shown: list[str] = field(default_factory=list)


def walk_through() -> list[tuple[str, object]]:
    """The README's runnable parts in order: ("python", code) and ("console", [Step, ...])."""
    parts: list[tuple[str, object]] = []
    for kind, body in re.findall(r"```(python|console)\n(.*?)```", TEXT, flags=re.DOTALL):
        if kind == "python":
            parts.append(("python", body))
            continue
        steps: list[Step] = []
        continued = False
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            elif continued:
                steps[-1].command += "\n" + line
            elif steps:
                steps[-1].shown.append(line)
            continued = line.endswith("\\")
        if steps:
            parts.append(("console", steps))
    return parts


def test_the_walk_through_has_the_commands_users_copy():
    commands = [s.command for kind, steps in walk_through() if kind == "console" for s in steps]
    assert any(c.startswith("hfrl split ") for c in commands)
    assert any(c.startswith("hfrl serve ") and c.endswith("&") for c in commands)
    assert sum(c.startswith("curl ") for c in commands) >= 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Session:
    """A shell-like session: ``hfrl`` is this checkout's CLI, ``export`` sets the environment, a line
    ending in ``&`` starts a server (waiting for its URL) and ``kill %1`` stops it (SIGINT)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        bin_dir = folder / ".bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "hfrl"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hfrl.cli "$@"\n')
        wrapper.chmod(0o755)
        src = str(Path(hfrl.__file__).resolve().parents[1])
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
        self.port = str(_free_port())
        self.ids: dict[str, str] = {}  # decision ids the README shows -> the ones this server gave
        self.server: subprocess.Popen | None = None

    def text(self, command: str) -> str:
        command = command.replace("8000", self.port)
        for shown, real in self.ids.items():
            command = command.replace(shown, real)
        return command

    def run(self, step: Step) -> None:
        command = self.text(step.command)
        if command.startswith("export "):
            key, _, value = command[len("export "):].split("#")[0].strip().partition("=")
            self.env[key] = value
            return
        if command.rstrip().endswith("&"):
            self.start(command.rstrip()[:-1])
            return
        if command.startswith("kill %1"):
            self.stop()
            command = command.split("&&", 1)[1]
        done = subprocess.run(["bash", "-c", command], cwd=self.folder, env=self.env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        self.check(step, done.stdout)

    def check(self, step: Step, out: str) -> None:
        """Outputs the README shows: the same HTTP status, the same JSON keys, the same grep lines."""
        if not step.shown:
            return
        shown = "\n".join(step.shown)
        if "%{http_code}" in step.command:
            assert out.split()[-1] == shown.split()[-1], (step.command, out)
        elif shown.startswith("{"):
            assert json.loads(out).keys() == json.loads(shown).keys(), (step.command, out)
        elif "| grep" in step.command:
            assert sorted(out.strip().splitlines()) == sorted(step.shown), (step.command, out)
        for readme_id, real_id in zip(ID.findall(shown), ID.findall(out), strict=False):
            self.ids.setdefault(readme_id, real_id)

    def start(self, command: str) -> None:
        self.server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.folder, env=self.env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.server.stdout.readline()
        assert f"http://127.0.0.1:{self.port}" in first, (first, self.server.stderr.read())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", int(self.port))) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("the server did not start listening")

    def stop(self) -> None:
        assert self.server is not None, "kill %1 without a server"
        self.server.send_signal(signal.SIGINT)
        out, err = self.server.communicate(timeout=30)
        self.server = None
        assert "POST /v1/decide" in out + err, "the access log shows each request"
        assert "stopped" in out, out


@pytest.mark.slow
def test_the_readme_walk_through_runs_in_order(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    session = Session(tmp_path)
    try:
        for kind, part in walk_through():
            if kind == "python":
                done = subprocess.run([sys.executable, "-c", part], cwd=tmp_path, env=session.env,
                                      capture_output=True, text=True, timeout=300)
                assert done.returncode == 0, (part, done.stderr)
                continue
            for step in part:
                session.run(step)
    finally:
        if session.server is not None:
            session.server.kill()
            session.server.communicate()
    for written in ("demo-out/report.html", "splits/test.parquet", "pi_prime.hfrl", "run-logs/report.html",
                    "decisions.parquet"):
        assert (tmp_path / written).is_file(), written
