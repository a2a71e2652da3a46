"""Start real services for tests (an MLflow tracking server + Model Registry), stop them by PID.

Each service listens on 127.0.0.1 on a free port and keeps its state in a directory the
caller owns (a pytest tmp dir), so tests never touch a developer's own server.
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


class ServiceStartError(RuntimeError):
    """A service did not come up; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``url`` until it answers 200; give up early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a service started here: SIGTERM to its process group (server + workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # start_new_session=True: its group id is its PID
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # Also when the leader exited: group members that ignore SIGTERM (idle LocalExecutor
    # workers) must not outlive the test session.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


def mlflow_executable() -> Path:
    """The ``mlflow`` command of the running interpreter's venv."""
    return Path(sys.executable).parent / "mlflow"


def start_mlflow_server(tmp_dir: str | Path, *, port: int | None = None, timeout: float = 120.0) -> tuple[str, subprocess.Popen]:
    """Start ``mlflow server`` (SQLite backend, proxied artifacts, one worker); return ``(url, process)``.

    Ready when ``/health`` answers (about 16 s on 2 cores). Raises ``ServiceStartError`` with
    the log tail when it does not come up; stop it with ``stop_process(process)``.
    """
    exe = mlflow_executable()
    if not exe.exists():
        raise ServiceStartError(f"{exe} not found: install the project's requirements into this venv")
    tmp_dir = Path(tmp_dir)
    (tmp_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_dir / "mlflow.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(exe), "server",
                "--backend-store-uri", f"sqlite:///{tmp_dir / 'mlflow.db'}",
                "--artifacts-destination", str(tmp_dir / "artifacts"), "--serve-artifacts",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=tmp_dir,
        )
    if not wait_http(f"{url}/health", timeout, proc):
        stop_process(proc)
        tail = log_path.read_text(errors="replace")[-3000:]
        raise ServiceStartError(f"mlflow server did not answer {url}/health within {timeout:.0f} s; log tail:\n{tail}")
    return url, proc
