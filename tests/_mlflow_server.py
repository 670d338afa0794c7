"""A real `mlflow server` (or `mlflow ui`) on a loopback port, for the team-server and browser tests.

The server runs as its own process group (the `mlflow` command forks uvicorn), so `kill()` takes the
whole server down at once, as a crashed host would, and `start()` brings it back on the same port and
the same database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: the venv's own mlflow command, next to the interpreter that runs the tests
MLFLOW = str(Path(sys.executable).with_name("mlflow"))

#: how long a server may take to answer /health: minutes, not seconds, on two loaded cores
START_TIMEOUT = 180.0


def free_port() -> int:
    """A TCP port that nothing listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` (or `mlflow ui`) on 127.0.0.1:port with a sqlite backend store.

    `command="server"` also serves artifacts from `artifacts` (`--artifacts-destination`);
    `command="ui"` takes only the backend store, as a user browsing a local store would start it.
    """

    def __init__(self, db: Path, artifacts: Path | None = None, port: int | None = None, command: str = "server"):
        self.db = Path(db)
        self.artifacts = Path(artifacts) if artifacts is not None else None
        self.port = port or free_port()
        self.command = command
        self.log = self.db.with_name(f"{command}-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [MLFLOW, self.command, "--backend-store-uri", f"sqlite:///{self.db}"]
        if self.artifacts is not None:
            argv += ["--artifacts-destination", str(self.artifacts)]
        # one worker: `mlflow ui` starts 4 by default, each importing all of MLflow (tens of seconds here)
        return argv + ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]

    def start(self) -> MlflowServer:
        """Start the server; returns at once (`wait()` blocks until it answers)."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # MLflow 3's job runner starts eight more Python processes (huey consumers) per server:
        # nothing here submits jobs, and two cores cannot afford them
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group: kill() takes uvicorn down with it
            )
        return self

    def wait(self, timeout: float = START_TIMEOUT) -> MlflowServer:
        """Block until /health answers OK; fail with the server's log if it dies or never answers."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow {self.command} exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if self.healthy():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"mlflow {self.command} did not answer /health within {timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def requests_seen(self, *paths: str) -> int:
        """How many requests to these API paths the server has logged (uvicorn's access log)."""
        text = self.log_text()
        return sum(text.count(f" {p}") for p in paths)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Take the whole server down at once (SIGKILL by default: no goodbye to its clients)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        # the port must be free again before the test restarts the server on it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.healthy():
            time.sleep(0.1)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM, which `mlflow server` forwards to uvicorn); SIGKILL if it hangs.

        Seconds on a loaded machine: a fixture whose store is thrown away may just `kill()`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        else:  # uvicorn's workers are in the same group: make sure none is left behind
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
