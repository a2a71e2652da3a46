"""Batch scoring (detectops.batch): the serving app's answers, per-image failures, inputs, CLI, MLflow.

The detector here answers from the pixels (per-channel means and the image's shape become its
boxes and scores), so a batch and the service agree only if they decode the same pixels.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from detectops.serve import ServeSettings, create_app

LABELS = {1: "bright", 2: "dark", 3: "wide"}


def make_pixel_detector(path: Path) -> Path:
    """A contract SavedModel whose detections are functions of the pixels and the image's shape."""
    import tensorflow as tf

    class PixelDetector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, input_tensor):
            x = tf.cast(input_tensor, tf.float32) / 255.0
            mean = tf.reduce_mean(x, axis=[0, 1, 2])  # [3]
            shape = tf.cast(tf.shape(input_tensor), tf.float32)
            aspect = shape[2] / (shape[1] + shape[2])  # width / (height + width)
            box1 = tf.stack([mean[0] * 0.5, mean[1] * 0.5, 0.5 + mean[2] * 0.5, 0.5 + aspect * 0.5])
            box2 = tf.stack([0.1, 0.1 * aspect, 0.9, 0.95])
            boxes = tf.reshape(tf.stack([box1, box2, box1 * 0.5]), [1, 3, 4])
            bright = tf.reduce_mean(mean)
            scores = tf.reshape(tf.stack([bright, 1.0 - bright, aspect]), [1, 3])
            classes = tf.constant([[1.0, 2.0, 3.0]])
            return {"detection_boxes": boxes, "detection_classes": classes, "detection_scores": scores,
                    "num_detections": tf.constant([3.0])}

    module = PixelDetector()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / "label_map.json").write_text(json.dumps({str(k): v for k, v in LABELS.items()}))
    return path


def _encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **kw)
    return buf.getvalue()


def write_images(root: Path, n: int = 10, *, seed: int = 0) -> list[str]:
    """``n`` images of different sizes, brightness and formats (JPEG, PNG, grayscale, EXIF-rotated)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        h, w = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8) // (1 + i % 3)
        if i % 4 == 0:
            name, data = f"img{i:03d}.png", _encode(base, "PNG")
        elif i % 4 == 1:
            name, data = f"img{i:03d}.png", _encode(base[..., 0], "PNG")  # grayscale
        elif i % 4 == 2:
            exif = Image.Exif()
            exif[0x0112] = 6  # rotated: the service turns it upright
            name, data = f"img{i:03d}.jpg", _encode(base, "JPEG", exif=exif)
        else:
            name, data = f"img{i:03d}.jpg", _encode(base, "JPEG", quality=85)
        (root / name).write_bytes(data)
        names.append(name)
    return names


def add_bad_files(root: Path) -> dict[str, str]:
    """Files the service refuses, with the error code it answers."""
    good = _encode(np.random.default_rng(5).integers(0, 255, (150, 150, 3), dtype=np.uint8), "JPEG")
    (root / "zz_empty.jpg").write_bytes(b"")
    (root / "zz_notes.txt").write_text("not an image")
    (root / "zz_truncated.jpg").write_bytes(good[: len(good) // 2])
    return {"zz_empty.jpg": "empty_image", "zz_notes.txt": "not_an_image", "zz_truncated.jpg": "truncated_image"}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_pixel_detector(tmp_path_factory.mktemp("model") / "pixel")


@pytest.fixture(scope="module")
def settings(model) -> ServeSettings:
    return ServeSettings(model_dir=model, model_name="detector", min_score=0.4, max_image_pixels=30_000)


@pytest.fixture()
def batch_dir(tmp_path) -> Path:
    root = tmp_path / "batch"
    write_images(root)
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_batch_gives_the_serving_apps_answers(model, settings, batch_dir, tmp_path):
    from detectops.batch import predict_batch
    from tests.unit.test_serve_app import wait_ready

    big = np.random.default_rng(3).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    (batch_dir / "zz_big.png").write_bytes(_encode(big, "PNG"))  # 40000 pixels: over this service's limit
    result = predict_batch(batch_dir, model, output_dir=tmp_path / "out", settings=settings)
    assert result["images_total"] == 11 and result["images_scored"] == 10
    assert [f["file_name"] for f in result["failures"]] == ["zz_big.png"]
    scored = {p["file_name"]: p for p in _lines(tmp_path / "out" / "predictions.jsonl")}

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        for name, mine in scored.items():
            data = (batch_dir / name).read_bytes()
            r = client.post("/v1/models/detector:predict", json={"instances": [{"b64": base64.b64encode(data).decode()}]})
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == [mine["prediction"]], name
            r = client.post("/detect", files={"file": (name, data)})
            assert r.status_code == 200, r.text
            served = r.json()
            assert served["detections"] == mine["detections"], name
            assert (served["image"]["width"], served["image"]["height"]) == (mine["width"], mine["height"])
        r = client.post("/detect", files={"file": ("zz_big.png", (batch_dir / "zz_big.png").read_bytes())})
        assert r.status_code == 413 and r.json()["code"] == result["failures"][0]["code"]
    # The detections depend on the pixels: the comparison above is not vacuous.
    assert len({json.dumps(p["prediction"]) for p in scored.values()}) == len(scored)
    # The per-class counts are the /detect rows at the service's min_score.
    counts: dict[str, int] = {}
    for p in scored.values():
        for row in p["detections"]:
            assert row["score"] >= settings.min_score
            counts[row["label"]] = counts.get(row["label"], 0) + 1
    assert result["detections_per_class"] == dict(sorted(counts.items())) and result["detections"] == sum(counts.values())


def test_the_answers_and_files_do_not_depend_on_how_many_files_are_scored_at_once(model, settings, batch_dir,
                                                                                   tmp_path):
    from detectops.batch import predict_batch

    add_bad_files(batch_dir)
    outputs = {}
    for workers in (1, 3):
        out = tmp_path / f"out-{workers}"
        result = predict_batch(batch_dir, model, output_dir=out, settings=settings, workers=workers)
        assert result["images_scored"] == 10 and result["images_failed"] == 3
        outputs[workers] = {name: (out / name).read_bytes() for name in ("predictions.jsonl", "results.json",
                                                                         "images.json", "contact_sheet.png")}
    assert outputs[1] == outputs[3]  # same answers, in the same (file) order, byte for byte


def test_unreadable_images_are_reported_and_the_rest_is_scored(model, settings, batch_dir, tmp_path):
    from detectops.batch import predict_batch

    bad = add_bad_files(batch_dir)
    out = tmp_path / "out"
    result = predict_batch(batch_dir, model, output_dir=out, settings=settings)
    assert result["images_total"] == 13 and result["images_scored"] == 10 and result["images_failed"] == 3
    assert {f["file_name"]: f["code"] for f in result["failures"]} == bad
    assert all(f["reason"] for f in result["failures"])

    images = json.loads((out / "images.json").read_text())
    assert {f["file_name"] for f in images["failed"]} == set(bad)
    ids = {im["id"]: im["file_name"] for im in images["images"]}
    assert len(ids) == 10 and not set(ids.values()) & set(bad)
    assert images["categories"] == [{"id": k, "name": v} for k, v in LABELS.items()]
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} == set(ids) and len(results) == 30  # every detection, 3 per image
    by_name = {p["file_name"]: p for p in _lines(out / "predictions.jsonl")}
    for k, r in enumerate(results[:3]):  # the first image's detections, as COCO pixel boxes of the file's own size
        p = by_name[ids[results[0]["image_id"]]]
        ymin, xmin, ymax, xmax = np.clip(p["prediction"]["detection_boxes"][k], 0, 1)
        assert r["image_id"] == results[0]["image_id"] and r["category_id"] == p["prediction"]["detection_classes"][k]
        assert r["bbox"] == pytest.approx([xmin * p["width"], ymin * p["height"], (xmax - xmin) * p["width"],
                                           (ymax - ymin) * p["height"]], abs=0.02)
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["score_histogram"]["counts"]) == 30 and len(summary["score_histogram"]["edges"]) == 11
    assert summary["images_failed"] == 3 and summary["min_score"] == 0.4
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.format == "PNG" and sheet.width >= 360 * 3


def test_a_plain_directory_and_its_stored_layout_have_the_same_ids_and_hash(batch_dir, tmp_path):
    from detectops.batch import inputs
    from detectops.data.hashing import dataset_hash

    (batch_dir / "sub").mkdir()
    (batch_dir / "sub" / "deep.png").write_bytes(_encode(np.zeros((8, 8, 3), np.uint8), "PNG"))
    (batch_dir / ".hidden").write_text("skipped")
    plain = inputs.list_images(batch_dir)
    assert [name for _, name, _ in plain][-1] == "sub/deep.png" and ".hidden" not in [n for _, n, _ in plain]
    staged = inputs.stage_unlabelled(batch_dir, tmp_path / "staged")
    assert [(i, n) for i, n, _ in inputs.list_images(staged)] == [(i, n) for i, n, _ in plain]
    assert inputs.content_hash(batch_dir) == dataset_hash(staged) == inputs.content_hash(staged)
    (batch_dir / "img000.png").unlink()  # (the staged copy may be a hard link)
    (batch_dir / "img000.png").write_bytes(b"changed")
    assert inputs.content_hash(batch_dir) != dataset_hash(staged)


def test_cli_predict_batch(model, batch_dir, tmp_path, capsys, monkeypatch):
    from detectops.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    add_bad_files(batch_dir)
    xcom = tmp_path / "xcom" / "return.json"
    code = main(["predict-batch", str(batch_dir), "--model", str(model), "--output", str(tmp_path / "out"),
                 "--min-score", "0.5", "--model-name", "pixel", "--model-version", "7", "--xcom-file", str(xcom)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(xcom.read_text())
    assert printed["images_scored"] == 10 and printed["images_failed"] == 3 and printed["min_score"] == 0.5
    assert printed["model"]["registered_name"] == "pixel" and printed["model"]["registered_version"] == "7"
    assert printed["run_id"] is None and (tmp_path / "out" / "contact_sheet.png").is_file()

    assert main(["predict-batch", str(tmp_path / "missing"), "--model", str(model)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["predict-batch", "runs:/" + "0" * 32 + "/batch", "--model", str(model)]) == 2
    assert "tracking URI" in capsys.readouterr().err

    # In a pod (--xcom-file), a deterministic failure is the pod's answer (exit 0, so Airflow does
    # not retry it) and the DAG reports it; a transient one still fails the pod, to be retried.
    failed = tmp_path / "xcom" / "failed.json"
    assert main(["predict-batch", str(tmp_path / "missing"), "--model", str(model), "--xcom-file", str(failed)]) == 0
    answer = json.loads(failed.read_text())
    assert "is not a directory" in answer["error"] and answer["input"] == str(tmp_path / "missing")
    import detectops.batch
    from detectops.errors import ServiceUnavailableError

    def unreachable(*_, **__):
        raise ServiceUnavailableError("MLflow at http://127.0.0.1:9 is unreachable")

    monkeypatch.setattr(detectops.batch, "predict_batch", unreachable)
    down = tmp_path / "xcom" / "down.json"
    assert main(["predict-batch", str(batch_dir), "--model", str(model), "--xcom-file", str(down)]) == 2
    assert not down.exists()


def test_mlflow_run_once_per_model_version_and_input(mlflow_server, model, settings, batch_dir, tmp_path):
    from mlflow import MlflowClient

    from detectops.batch import inputs, predict_batch
    from detectops.batch.report import EXPERIMENT, KEY_TAG

    add_bad_files(batch_dir)
    first = predict_batch(batch_dir, model, tracking_uri=mlflow_server, output_dir=tmp_path / "a", settings=settings,
                          model_name="pixel", model_version="1")
    assert first["run_id"] and first["reused"] is False
    client = MlflowClient(mlflow_server)
    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["images_scored"] == 10 and run.data.metrics["images_failed"] == 3
    assert run.data.params["model_version"] == "1" and run.data.params["input_sha256"] == first["input"]["sha256"]
    files = {Path(f.path).name for f in client.list_artifacts(first["run_id"], "batch_scoring")}
    assert files == {"results.json", "images.json", "predictions.jsonl", "summary.json", "contact_sheet.png"}

    # A retry (same model version, same content, same threshold) logs nothing new; so does the
    # same content fetched from the store, where a pod reads it.
    again = predict_batch(batch_dir, model, tracking_uri=mlflow_server, settings=settings, model_name="pixel",
                          model_version="1")
    assert again["reused"] is True and again["run_id"] == first["run_id"]
    assert again["images_scored"] == 10 and again["failures"] == first["failures"]
    stored = inputs.publish(batch_dir, tracking_uri=mlflow_server)
    assert stored["uri"].startswith("runs:/") and stored["sha256"] == first["input"]["sha256"]
    from_store = predict_batch(stored["uri"], model, tracking_uri=mlflow_server, settings=settings, model_name="pixel",
                               model_version="1")
    assert from_store["run_id"] == first["run_id"]

    other = predict_batch(stored["uri"], model, tracking_uri=mlflow_server, settings=settings, model_name="pixel",
                          model_version="2", output_dir=tmp_path / "b")
    assert other["run_id"] != first["run_id"] and other["reused"] is False
    assert other["images_scored"] == 10 and other["input"]["location"] == stored["uri"]
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{first['key']}'")
    assert len(runs) == 1


def test_a_scoring_that_dies_half_way_leaves_no_half_written_files(model, settings, batch_dir, tmp_path):
    from detectops.batch import report, score_images
    from detectops.models import Detector

    real = Detector.load(model)

    class Dies:
        label_map, input_size, calls = real.label_map, real.input_size, 0

        def predict(self, image):
            Dies.calls += 1
            if Dies.calls == 4:
                raise RuntimeError("the model died")
            return real.predict(image)

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="died"):
        with report.OutputWriter(out) as writer:
            score_images(Dies(), sorted((i, p.name, p) for i, p in enumerate(sorted(batch_dir.iterdir()), 1)),
                         settings, sink=writer.add)
    assert list(out.iterdir()) == []  # nothing partial, nothing pretending to be complete
    kept = []
    scored = score_images(real, [(1, "a.png", next(batch_dir.glob("*.png")))], settings, sink=kept.append)
    assert len(kept) == 1 and scored.images == [{"id": 1, "file_name": "a.png", "width": kept[0].width,
                                                 "height": kept[0].height}]
