"""Batch scoring in a real pod of a real detector image gives the deployed service's answers.

1. A detector whose detections depend on the pixels and the image's shape (so a decoding
   difference shows) is baked into the serving image (``detectops.build.build_and_push``, as
   ``test_image.build_test_image`` does for the tiny detector), pushed, and deployed with the
   shared deploy path (rollout + smoke test through the NodePort).
2. 110 images of several formats and sizes (EXIF-rotated JPEGs, grayscale PNGs, ...) and three
   unreadable files are published to the session's MLflow store (``runs:/<id>/batch``).
3. A pod of that very image runs ``detectops predict-batch`` with exactly the DAG's arguments
   (``batch.steps.pod_arguments``), as the DAG's pod runs it: non-root, bounded, MLflow at its
   pod-reachable address, the XCom file in an emptyDir at ``/airflow/xcom``.
4. Every image goes to the deployed Service through its NodePort on 127.0.0.1: ``:predict`` and
   ``/detect`` answer exactly what the pod logged to MLflow; the unreadable files get the same
   error codes the pod reported.

Needs the infrastructure: ``scripts/infra/up.sh`` (writes ``.state/infra/env.sh``).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest

from detectops import settings
from detectops.fsutil import staged_dir
from tests.integration.test_deploy import kube, namespace  # noqa: F401 (module fixtures: a throwaway namespace)
from tests.integration.test_image import infra_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NUM_IMAGES = 110
DEPLOYMENT = "pixel"
MIN_SCORE = 0.4


def pixel_model_dir() -> Path:
    """The pixel-dependent test detector in a fixed cache path, written once (the image's layers cache)."""
    from tests.unit.test_batch_scoring import make_pixel_detector

    final = settings.cache_dir() / "test-models" / "pixel-detector"
    if not (final / "saved_model.pb").is_file():
        with staged_dir(final, replace=True) as tmp:
            make_pixel_detector(tmp)
    return final


@pytest.fixture(scope="module")
def image():
    from detectops.build import build_and_push

    env = infra_env()
    return build_and_push(pixel_model_dir(), registry=env["DETECTOPS_REGISTRY"], model_version="1",
                          model_name="pixel", dataset_sha256="0" * 64, base_image=env.get("DETECTOPS_BASE_IMAGE"),
                          docker_host=env["DOCKER_HOST"], log=lambda _: None)


@pytest.fixture(scope="module")
def service(kube, namespace, image):  # noqa: F811
    """The image deployed through the shared deploy path; its NodePort URL on loopback."""
    from detectops.deploy import DeploySpec, deploy
    from detectops.deploy.smoke import smoke_targets

    spec = DeploySpec(model_name="pixel-it", model_version="1", image=image.pinned, namespace=namespace,
                      deployment=DEPLOYMENT, score_threshold=MIN_SCORE, min_detections=0, rollout_timeout_s=240)
    deploy(spec, smoke_via="nodeport", kube=kube, log=lambda _: None)
    (target,) = smoke_targets(kube, namespace, spec.service, spec.port, "nodeport")
    assert target.label.startswith("http://127.0.0.1:")  # loopback only
    return target.label


def _run_pod(kube, namespace: str, image: str, arguments: list[str], timeout_s: int = 300) -> tuple[dict, float]:  # noqa: F811
    """The DAG's scoring pod, by hand; its result (the last JSON object it printed) and its run time."""
    from kubernetes.client import models as k8s

    from detectops.orchestration import training_pod_settings

    pod_settings = training_pod_settings()  # what the DAG's KubernetesPodOperator gets
    pod = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(generate_name="detectops-batch-score-"),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            security_context=pod_settings["security_context"],
            automount_service_account_token=pod_settings["automount_service_account_token"],
            containers=[k8s.V1Container(
                name="base", image=image, command=["detectops"], args=arguments,
                resources=pod_settings["container_resources"],
                volume_mounts=[k8s.V1VolumeMount(name="xcom", mount_path="/airflow/xcom")])],
            volumes=[k8s.V1Volume(name="xcom", empty_dir=k8s.V1EmptyDirVolumeSource())]))
    name = kube.core.create_namespaced_pod(namespace, pod).metadata.name
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        phase = kube.core.read_namespaced_pod(name, namespace).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        assert time.monotonic() < deadline, f"scoring pod {name} still {phase} after {timeout_s}s"
        time.sleep(2)
    elapsed = time.monotonic() - started
    logs = kube.core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()
    assert phase == "Succeeded", f"scoring pod failed:\n{logs[-4000:]}"
    lines = logs.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the CLI prints its result last, as JSON
    result, _ = json.JSONDecoder().raw_decode("\n".join(lines[start:]))
    kube.core.delete_namespaced_pod(name, namespace)
    return result, elapsed


def test_a_pod_of_the_detector_image_scores_like_the_deployed_service(kube, namespace, image, service,  # noqa: F811
                                                                      mlflow_server, tmp_path):
    import mlflow.artifacts

    from detectops.batch import inputs, steps
    from tests.unit.test_batch_scoring import add_bad_files, write_images

    batch = tmp_path / "batch"
    write_images(batch, NUM_IMAGES, seed=11)
    bad = add_bad_files(batch)
    stored = inputs.publish(batch, tracking_uri=mlflow_server)
    model = {"name": "pixel-it", "version": "1", "image": image.pinned}
    arguments = steps.pod_arguments(model, stored, tracking_uri=mlflow_server, min_score=MIN_SCORE)
    result, elapsed = _run_pod(kube, namespace, image.pinned, arguments)
    print(f"pod scored {result['images_scored']} images in {result['wall_s']} s ({result['throughput_ips']} images/s); "
          f"pod ran {elapsed:.0f} s")
    assert result["images_scored"] == NUM_IMAGES and result["images_failed"] == len(bad)
    assert result["run_id"] and result["reused"] is False and result["input"]["sha256"] == stored["sha256"]
    assert result["model"]["registered_name"] == "pixel-it" and result["model"]["registered_version"] == "1"

    local = mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="batch_scoring",
                                                dst_path=str(tmp_path / "logged"), tracking_uri=mlflow_server)
    logged = {p["file_name"]: p for p in map(json.loads, Path(local, "predictions.jsonl").read_text().splitlines())}
    assert set(logged) == {p.name for p in batch.iterdir()} - set(bad)
    summary = json.loads(Path(local, "summary.json").read_text())
    assert {f["file_name"]: f["code"] for f in summary["failures"]} == bad

    with httpx.Client(base_url=service, timeout=60) as client:
        for name, mine in sorted(logged.items()):
            data = (batch / name).read_bytes()
            r = client.post("/v1/models/detector:predict", json={"instances": [{"b64": base64.b64encode(data).decode()}]})
            assert r.status_code == 200, r.text[:300]
            assert r.json()["predictions"] == [mine["prediction"]], name
            r = client.post("/detect", files={"file": (name, data)})
            assert r.status_code == 200, r.text[:300]
            assert r.json()["min_score"] == MIN_SCORE and r.json()["detections"] == mine["detections"], name
        for name, code in bad.items():
            r = client.post("/detect", files={"file": (name, (batch / name).read_bytes())})
            assert r.status_code == 400 and r.json()["code"] == code, (name, r.text[:300])
    assert len({json.dumps(p["prediction"]) for p in logged.values()}) == NUM_IMAGES  # the answers differ per image

    # The same batch and version again (a retried task): the pod finds the run and scores nothing.
    again, _ = _run_pod(kube, namespace, image.pinned, arguments)
    assert again["reused"] is True and again["run_id"] == result["run_id"]
