"""The per-model deploy lock: a Lease written with the API server's compare-and-set semantics.

The fake below enforces what the real API server does for the calls the lock makes: create
fails with 409 if the Lease exists, replace and delete fail with 409 if the resourceVersion
moved. tests/integration/test_deploy.py runs the same lock against the real cluster.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from kubernetes.client.rest import ApiException

from detectops.deploy import lock
from detectops.deploy.lock import LockLost, lease_name, release, renew, status, try_acquire


def _time(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc) if text else None


class FakeLeases:
    def __init__(self) -> None:
        self.store: dict[str, dict] = {}
        self.version = 0
        self.guard = threading.Lock()

    def _obj(self, body):
        spec = body["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(name=body["metadata"]["name"], resource_version=body["metadata"]["resourceVersion"]),
            spec=SimpleNamespace(holder_identity=spec.get("holderIdentity"),
                                 lease_duration_seconds=spec.get("leaseDurationSeconds"),
                                 acquire_time=_time(spec.get("acquireTime")), renew_time=_time(spec.get("renewTime"))))

    def read_namespaced_lease(self, name, namespace):
        with self.guard:
            if name not in self.store:
                raise ApiException(status=404)
            return self._obj(self.store[name])

    def create_namespaced_lease(self, namespace, body):
        with self.guard:
            if body["metadata"]["name"] in self.store:
                raise ApiException(status=409)
            self.version += 1
            body["metadata"]["resourceVersion"] = str(self.version)
            self.store[body["metadata"]["name"]] = body

    def replace_namespaced_lease(self, name, namespace, body):
        with self.guard:
            if self.store[name]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
                raise ApiException(status=409)
            self.version += 1
            body["metadata"]["resourceVersion"] = str(self.version)
            self.store[name] = body

    def delete_namespaced_lease(self, name, namespace, body):
        with self.guard:
            if name not in self.store:
                raise ApiException(status=404)
            if self.store[name]["metadata"]["resourceVersion"] != body.preconditions.resource_version:
                raise ApiException(status=409)
            del self.store[name]


@pytest.fixture
def kube(monkeypatch):
    monkeypatch.setattr(lock, "apply", lambda kube, obj: None)  # the namespace
    return SimpleNamespace(coordination=FakeLeases())


def test_one_holder_at_a_time_per_model(kube) -> None:
    assert try_acquire(kube, "detector", "level0/run1").holder == "level0/run1"
    assert try_acquire(kube, "detector", "level1/run7").holder == "level0/run1"  # must wait
    assert try_acquire(kube, "shapes", "level1/run7").holder == "level1/run7"  # another model: no wait
    assert try_acquire(kube, "detector", "level0/run1").holder == "level0/run1"  # re-entrant (a retried task)
    assert release(kube, "detector", "level1/run7") is False  # never someone else's
    assert status(kube, "detector").holder == "level0/run1"
    assert release(kube, "detector", "level0/run1") is True
    assert try_acquire(kube, "detector", "level1/run7").holder == "level1/run7"


def test_an_expired_lease_can_be_taken_and_its_old_holder_is_fenced(kube, monkeypatch) -> None:
    try_acquire(kube, "detector", "crashed/run", lease_s=60)
    later = datetime.now(timezone.utc) + timedelta(seconds=61)
    monkeypatch.setattr(lock, "_now", lambda: later)
    assert status(kube, "detector").holder is None
    assert try_acquire(kube, "detector", "next/run").holder == "next/run"
    with pytest.raises(LockLost, match="no longer holds the deploy lock.*held by next/run"):
        renew(kube, "detector", "crashed/run")  # before it moves an alias


def test_racing_acquirers_get_exactly_one_winner(kube) -> None:
    results: list[str | None] = []

    def contend(i: int) -> None:
        holder = f"run{i}"
        results.append(holder if try_acquire(kube, "detector", holder).holder == holder else None)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len([r for r in results if r]) == 1  # none crashed, one won


def test_lease_names_are_valid_and_distinct() -> None:
    names = {lease_name(n) for n in ("detector", "Detector", "shapes_v2", "shapes-v2", "x" * 200)}
    assert len(names) == 5
    import re

    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) and len(n) <= 63 for n in names)
