"""Landing: file drop (with the standard provider's real trigger), REST events, the CLI, idempotency."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from detectops.data import SyntheticSpec, dataset_hash, generate_synthetic
from detectops.data.landing import (
    DOORBELL, LandedBatch, LandingError, check_location, collect_batches, drop_batch, ingested_hashes, land,
    mark_ingested,
)
from tests.support.http_stub import send_json


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("sources")
    out = []
    for i in range(2):
        generate_synthetic(base / f"batch{i}", SyntheticSpec(num_images=3, image_size=(32, 32), seed=40 + i))
        out.append(base / f"batch{i}")
    return out


def _age(path, seconds_ago):
    t = os.stat(path).st_mtime - seconds_ago
    os.utime(path, (t, t))


def test_file_drops_are_collected_in_landing_order_once(sources, tmp_path):
    landing = tmp_path / "landing"
    drop_batch(sources[1], landing, model="shapes")
    drop_batch(sources[0], landing)
    _age(landing / "batch0.ready", 60)  # batch0 landed first
    drop_batch(sources[0], landing, name="batch0-again")  # the same content under another name
    (landing / "partial").mkdir()  # a copy still running: no .ready marker yet
    assert (landing / DOORBELL).is_file()

    batches = collect_batches([{"extra": {"from_trigger": True}}], landing, [str(landing)])
    assert [b.name for b in batches] == ["batch0", "batch1"]
    assert [b.sha256 for b in batches] == [dataset_hash(s) for s in sources]
    assert [b.source for b in batches] == ["file", "file"] and batches[1].model == "shapes"
    for b in batches:  # a content-addressed copy: later changes in the landing area change nothing
        assert b.path.endswith(f".staged/{b.sha256}") and dataset_hash(b.path) == b.sha256
    assert LandedBatch.from_dict(json.loads(json.dumps(batches[0].to_dict()))) == batches[0]


def test_ingested_batches_are_not_collected_again(sources, tmp_path):
    landing = tmp_path / "landing"
    drop_batch(sources[0], landing)
    first = collect_batches([], landing, [str(landing)])
    mark_ingested(first, landing, version="v1")
    assert ingested_hashes(landing) == {first[0].sha256}
    assert not (landing / "batch0.ready").exists() and (landing / "batch0").is_dir()  # nothing lost
    assert collect_batches([], landing, [str(landing)]) == []
    drop_batch(sources[0], landing, name="again")  # landed again later: still ingested once
    assert collect_batches([], landing, [str(landing)]) == []
    record = json.loads((landing / ".ingested" / f"{first[0].sha256}.json").read_text())
    assert record["outcome"] == "ingested" and record["version"] == "v1"


def test_rest_events_are_checked_against_the_allow_list(sources, tmp_path):
    landing, outside = tmp_path / "landing", tmp_path / "elsewhere"
    uploads = tmp_path / "uploads"
    shutil.copytree(sources[0], uploads / "b0")
    shutil.copytree(sources[1], outside / "b1")
    roots = [str(landing), str(uploads), "runs:/"]
    events = [{"extra": {"location": str(uploads / "b0"), "model": "shapes"}, "timestamp": "2026-11-26T10:00:00+00:00"}]
    (batch,) = collect_batches(events, landing, roots)
    assert (batch.source, batch.model, batch.sha256) == ("rest", "shapes", dataset_hash(sources[0]))
    assert batch.landed_at.startswith("2026-11-26T10:00:00")

    with pytest.raises(LandingError, match="outside the allowed roots"):
        collect_batches([{"extra": {"location": str(outside / "b1"), "model": "m"}}], landing, roots)
    with pytest.raises(LandingError, match="outside the allowed roots"):  # ".." does not escape
        check_location(str(uploads / ".." / "elsewhere" / "b1"), roots)
    (uploads / "link").symlink_to(outside / "b1")
    with pytest.raises(LandingError, match="outside the allowed roots"):  # nor does a symlink
        check_location(str(uploads / "link"), roots)
    with pytest.raises(LandingError, match="not allowed"):
        check_location("s3://bucket/b1", roots)
    with pytest.raises(LandingError, match="no usable 'location'"):
        check_location("", roots)
    with pytest.raises(LandingError, match="not a directory"):
        check_location(str(uploads / "b0" / "annotations.json"), roots)
    # "skip" keeps the good batches of a run with one bad event.
    mixed = [{"extra": {"location": str(outside / "b1")}}, events[0]]
    assert [b.name for b in collect_batches(mixed, landing, roots, on_bad_location="skip")] == ["b0"]


@pytest.mark.platform
def test_the_standard_trigger_fires_on_the_doorbell(sources, tmp_path):
    """The DAG's AssetWatcher uses FileDeleteTrigger on <landing>/READY: a drop fires it once."""
    from airflow.providers.standard.triggers.file import FileDeleteTrigger

    landing = tmp_path / "landing"
    drop_batch(sources[0], landing)
    trigger = FileDeleteTrigger(filepath=str(landing / DOORBELL), poke_interval=0.01)

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=10))
    assert event.payload is True and not (landing / DOORBELL).exists()  # fired, then deleted
    assert [b.name for b in collect_batches([{"extra": {}}], landing, [str(landing)])] == ["batch0"]


def _printed(capsys):
    """The JSON the CLI printed (once Airflow is imported, its log lines go to stdout too)."""
    out = capsys.readouterr().out
    return json.loads(out[out.index("{\n"):])


class _FakeAirflow(BaseHTTPRequestHandler):
    """Airflow 3's REST endpoints that `detectops land` uses, recording what it receives."""

    requests: list = []

    def _reply(self, code, body):
        send_json(self, code, body)

    def _body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def do_POST(self):
        body = self._body()
        self.requests.append(("POST", self.path, body, self.headers.get("Authorization")))
        if self.path == "/auth/token":
            if body != {"username": "admin", "password": "pw"}:
                return self._reply(401, {"detail": "bad login"})
            return self._reply(201, {"access_token": "tok"})
        if self.path == "/api/v2/assets/events":
            return self._reply(200, {"id": 7, "asset_id": body["asset_id"], "extra": body["extra"]})
        return self._reply(404, {})

    def do_GET(self):
        self.requests.append(("GET", self.path, None, self.headers.get("Authorization")))
        if self.path.startswith("/api/v2/assets?"):
            return self._reply(200, {"assets": [{"id": 3, "uri": "detectops://data/batch-landed-old"},
                                                {"id": 42, "uri": "detectops://data/batch-landed"}]})
        return self._reply(404, {})

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_airflow():
    _FakeAirflow.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAirflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _FakeAirflow.requests
    server.shutdown()
    server.server_close()


def test_cli_land_stores_the_batch_and_emits_the_event(mlflow_server, fake_airflow, sources, tmp_path, capsys):
    from detectops.airflow_api import AirflowApi
    from detectops.cli import main

    url, requests = fake_airflow
    out = land(sources[0], "shapes", tracking_uri=mlflow_server, api=AirflowApi(url, "admin", "pw"))
    sha = dataset_hash(sources[0])
    assert out["sha256"] == sha and out["location"].startswith("runs:/") and out["event_id"] == 7
    posted = [r for r in requests if r[1] == "/api/v2/assets/events"]
    assert posted == [("POST", "/api/v2/assets/events", {"asset_id": 42, "extra": {
        "location": out["location"], "model": "shapes", "sha256": sha, "name": "batch0"}}, "Bearer tok")]
    assert any(r[0] == "GET" and "uri_pattern=detectops" in r[1] for r in requests)

    # The event's location is collected from the store (and is the same batch as a file drop).
    landing = tmp_path / "landing"
    (batch,) = collect_batches([{"extra": posted[0][2]["extra"]}], landing, ["runs:/"], tracking_uri=mlflow_server)
    assert (batch.source, batch.sha256, batch.model, batch.name) == ("store", sha, "shapes", "batch0")
    drop_batch(sources[0], landing)
    assert len(collect_batches([{"extra": posted[0][2]["extra"]}], landing, ["runs:/"],
                               tracking_uri=mlflow_server)) == 1

    # The same through the command line, options from the environment; the same batch is not re-uploaded.
    env = {"DETECTOPS_AIRFLOW_URL": url, "DETECTOPS_AIRFLOW_USERNAME": "admin", "DETECTOPS_AIRFLOW_PASSWORD": "pw"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["land", str(sources[0]), "--model", "shapes", "--mlflow", mlflow_server]) == 0
        assert _printed(capsys)["location"] == out["location"]
        assert main(["land", str(sources[0]), "--model", "shapes", "--mlflow", mlflow_server,
                     "--password", "wrong"]) != 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_cli_land_by_file_drop(sources, tmp_path, capsys):
    from detectops.cli import main

    landing = tmp_path / "landing"
    assert main(["land", str(sources[1]), "--model", "shapes", "--drop", str(landing)]) == 0
    assert _printed(capsys)["path"] == str(landing / "batch1")
    assert (landing / DOORBELL).is_file() and (landing / "batch1.ready").is_file()
    assert main(["land", str(tmp_path / "nope"), "--model", "shapes", "--drop", str(landing)]) == 2


@pytest.mark.platform
def test_dag_helpers_validate_and_quarantine_under_the_run(sources, tmp_path, monkeypatch):
    """What the level-1 DAG calls: the batch's GX report lands under the run's work dir; a
    refused batch is kept with its verdict under the state dir's quarantine."""
    from detectops.data import SYNTHETIC_LABEL_MAP
    from detectops.data.landing import quarantine, validate_batch

    monkeypatch.setenv("DETECTOPS_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("DETECTOPS_HOME", str(tmp_path / "state"))
    verdict = validate_batch(sources[0], {1: "circle"}, context={"run_id": "asset_triggered__1"})
    assert verdict.status == "rejected"
    where = quarantine(sources[0], verdict)
    assert where.parent == tmp_path / "state" / "quarantine"
    assert json.loads((where / "report.json").read_text())["status"] == "rejected"
    verdict = validate_batch(sources[0], SYNTHETIC_LABEL_MAP, context={"run_id": "asset_triggered__1"},
                             purpose={"name": "training", "required_classes": [1], "min_boxes_per_class": 1})
    assert verdict.accepted, verdict.reason
    assert (tmp_path / "work" / "validation" / "asset_triggered__1" / "batch0" / "report.json").is_file()


@pytest.mark.platform
def test_a_batch_with_only_some_of_the_classes_is_accepted(tmp_path, monkeypatch):
    """A batch is part of the training data: a day of photos without triangles is still a good batch."""
    from detectops.data import SYNTHETIC_LABEL_MAP
    from detectops.data.landing import validate_batch
    from detectops.data.synthetic import SyntheticSpec, generate_synthetic

    monkeypatch.setenv("DETECTOPS_WORK", str(tmp_path / "work"))
    circles = tmp_path / "circles"
    generate_synthetic(circles, SyntheticSpec(num_images=12, seed=3, class_weights={"circle": 1.0}))
    verdict = validate_batch(circles, SYNTHETIC_LABEL_MAP, context={"run_id": "r"})
    assert verdict.accepted, verdict.reason
    # Judged as a whole training set (every class needs boxes) it would have been refused.
    from detectops.quality.purpose import Purpose

    whole = validate_batch(circles, SYNTHETIC_LABEL_MAP, context={"run_id": "r"},
                           purpose=Purpose.training(SYNTHETIC_LABEL_MAP))
    assert not whole.accepted
    # The label map still applies: a class outside it is rejected.
    assert validate_batch(circles, {2: "square"}, context={"run_id": "r"}).status == "rejected"
