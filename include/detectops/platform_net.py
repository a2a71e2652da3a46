"""How pods reach the platform's services that run on the host (MLflow, the apiserver).

On the local cluster (``scripts/infra/up.sh``) services listen on 127.0.0.1, which a pod cannot
reach. Pods reach the host only at the cluster bridge's own address (``DETECTOPS_BRIDGE_IP``,
10.244.0.1, the pods' gateway), and only where a forwarder bound to that address relays to
127.0.0.1 -- never on 0.0.0.0 or an outside interface. Two helpers:

- :func:`pod_reachable_url` turns a host URL into the URL a pod uses;
- :func:`bridge_forward` starts (and :meth:`BridgeForward.stop` stops) such a forwarder.

The shell twin is ``scripts/infra/bridge-forward.sh`` (used by ``scripts/services/mlflow.sh``
and for the apiserver). On an external cluster the bridge IP is empty: URLs must then already
be reachable from pods (a Service or an external address), and loopback URLs are an error.

Standard library only: DAG files may import it at parse time.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from detectops.errors import DetectOpsError
from detectops.settings import state_dir

#: Environment variable (written to ``$DETECTOPS_HOME/infra/env.sh`` by up.sh) naming the bridge address.
BRIDGE_IP_ENV = "DETECTOPS_BRIDGE_IP"


class PlatformNetworkError(DetectOpsError):
    """A host service cannot be made reachable from pods (no bridge, no socat, port taken)."""


def _infra_env_file() -> Path:
    infra = os.environ.get("DETECTOPS_INFRA_DIR")
    return Path(infra) / "env.sh" if infra else state_dir() / "infra" / "env.sh"


def bridge_ip() -> str | None:
    """The cluster bridge's own address, or ``None`` when no local cluster is up (or it is external).

    ``DETECTOPS_BRIDGE_IP`` wins (also when set empty); otherwise it is read from the
    ``env.sh`` that ``scripts/infra/up.sh`` writes.
    """
    if BRIDGE_IP_ENV in os.environ:
        return os.environ[BRIDGE_IP_ENV] or None
    env_file = _infra_env_file()
    try:
        text = env_file.read_text()
    except OSError:
        return None
    m = re.search(rf'^export {BRIDGE_IP_ENV}="([^"]*)"$', text, re.MULTILINE)
    return (m.group(1) or None) if m else None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pod_reachable_url(host_url: str) -> str:
    """The URL a pod of the cluster uses for ``host_url``, a service this host runs.

    ``http://127.0.0.1:5500/x`` -> ``http://10.244.0.1:5500/x`` on the local cluster (serve it
    there with :func:`bridge_forward` or ``scripts/infra/bridge-forward.sh``). Any non-loopback
    URL is returned unchanged: it names an address meant to be reachable already.
    """
    parts = urlsplit(host_url)
    host = parts.hostname or ""
    if not _is_loopback(host):
        return host_url
    ip = bridge_ip()
    if ip is None:
        raise PlatformNetworkError(
            f"{host_url} is a loopback address, which pods cannot reach, and there is no local cluster "
            f"bridge to forward it through ({BRIDGE_IP_ENV} is unset and {_infra_env_file()} names none). "
            "Start the local infrastructure (scripts/infra/up.sh), or give the service an address the "
            "cluster's pods can reach."
        )
    netloc = ip if parts.port is None else f"{ip}:{parts.port}"
    if parts.username or parts.password:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def _listening(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) == 0


class BridgeForward:
    """A forwarder ``bridge_ip:port -> target_host:target_port``; stop it with :meth:`stop`.

    ``process`` is ``None`` when a forwarder was already listening there (e.g. the one
    ``scripts/services/mlflow.sh`` starts): that one is left alone by :meth:`stop`.
    """

    def __init__(self, bridge: str, port: int, target: str, process: subprocess.Popen | None):
        self.bridge_ip = bridge
        self.port = port
        self.target = target
        self.process = process

    @property
    def address(self) -> str:
        """``ip:port`` where pods connect."""
        return f"{self.bridge_ip}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the forwarder this object started (socat and the children it forked per connection)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # start_new_session=True: its group id is its PID
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> BridgeForward:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def bridge_forward(port: int, *, target_port: int | None = None, target_host: str = "127.0.0.1",
                   timeout: float = 10.0) -> BridgeForward:
    """Make ``target_host:target_port`` (default: the same port) reachable from pods at ``bridge_ip():port``.

    Starts ``socat`` bound to the bridge address only; returns once it accepts connections.
    Raises :class:`PlatformNetworkError` when there is no local bridge, socat is missing, or
    the forwarder does not come up.
    """
    ip = bridge_ip()
    if ip is None:
        raise PlatformNetworkError(
            "no local cluster bridge to forward through: start the local infrastructure "
            "(scripts/infra/up.sh), or give the service an address the cluster's pods can reach"
        )
    target = f"{target_host}:{target_port or port}"
    if _listening(ip, port):
        return BridgeForward(ip, port, target, None)
    socat = shutil.which("socat")
    if socat is None:
        raise PlatformNetworkError("socat is not installed: run scripts/infra/install-deps.sh")
    # Its messages go to a file, not a pipe: nobody reads a pipe while it runs, and a full one
    # would block the forked per-connection children.
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(
            [socat, f"TCP-LISTEN:{port},bind={ip},reuseaddr,fork", f"TCP:{target}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file,
            start_new_session=True,
        )
        return _wait_listening(BridgeForward(ip, port, target, proc), err_file, timeout)


def _wait_listening(forward: BridgeForward, err_file, timeout: float) -> BridgeForward:
    proc, ip, port, target = forward.process, forward.bridge_ip, forward.port, forward.target
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err_file.seek(0)
            err = err_file.read().decode(errors="replace").strip()
            raise PlatformNetworkError(
                f"the forwarder {ip}:{port} -> {target} exited: {err or 'no message'}. "
                f"Is the bridge up (scripts/infra/up.sh) and {ip}:{port} free?"
            )
        if _listening(ip, port):
            return forward
        time.sleep(0.05)
    forward.stop()
    raise PlatformNetworkError(f"the forwarder {ip}:{port} -> {target} did not listen within {timeout:.0f} s")
