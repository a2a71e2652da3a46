"""detectops.deploy against the real single-node cluster from ``scripts/infra/up.sh``.

1. An admin creates a namespace and the deployer's ServiceAccount/Role/RoleBinding.
2. The deployer runs *as an ordinary pod* (no host network) with only that Role: in-cluster
   config through the ``kubernetes`` Service, rolls the tiny-detector image out, smoke-tests it
   through the Service's ClusterIP and prints its DeploymentResult.
3. From the host, through the Service's NodePort on 127.0.0.1 (loopback only), the astronaut
   photo goes to ``:predict`` and ``/detect``.
4. A deliberately broken image (its model path does not exist, so the container exits) is
   deployed: the rollout fails early, is rolled back automatically, and the good version keeps
   serving.
5. The per-model deploy lock on the real Lease API: one holder at a time, released by its holder.

Needs the infrastructure: ``scripts/infra/up.sh`` (writes ``.state/infra/env.sh``).
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

import pytest

from tests.integration.test_image import astronaut_jpeg, build_test_image, infra_env, multipart

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "detector"


@pytest.fixture(scope="module")
def kube():
    env = infra_env()
    if not env.get("KUBECONFIG"):
        pytest.skip("env.sh exports no KUBECONFIG: rerun scripts/infra/up.sh")
    from detectops.deploy import connect

    return connect(env["KUBECONFIG"])


@pytest.fixture(scope="module")
def namespace(kube):
    from detectops.deploy import prepare_namespace

    ns = f"detectops-it-{uuid.uuid4().hex[:6]}"
    prepare_namespace(ns, kube=kube)
    yield ns
    kube.core.delete_namespace(ns)


@pytest.fixture(scope="module")
def good_image():
    return build_test_image(log=lambda _: None)


@pytest.fixture(scope="module")
def broken_image(good_image):
    """The good image with its model path pointing nowhere: `detectops serve` exits at start."""
    from detectops.build import docker_client, push_image

    client = docker_client()
    tag = f"{good_image.repository}:broken-{good_image.tag}"
    dockerfile = f"FROM {good_image.pinned}\nENV DETECTOPS_MODEL_DIR=/nonexistent\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="host", rm=True)
    return push_image(tag, log=lambda _: None)


def _spec(image, namespace: str, **changes):
    from detectops.deploy import DeploySpec

    return DeploySpec(**{"model_name": "detector-it", "model_version": "1", "image": image.pinned,
                         "namespace": namespace, "deployment": NAME, **changes})


def _run_deployer_pod(kube, spec, deployer_image: str, timeout_s: int = 420) -> dict:
    """The deployer pod from include/k8s/serving/deployer-pod.yaml; returns the DeploymentResult it printed."""
    from detectops.deploy import deployer_pod_manifest

    pod = deployer_pod_manifest(deployer_image=deployer_image, spec=spec)
    # The pod runs the image's entrypoint as rendered: `detectops deploy --spec JSON`, exactly
    # what deploy_group's KubernetesPodOperator runs.
    assert pod["spec"]["containers"][0]["args"][:2] == ["deploy", "--spec"] and "hostNetwork" not in pod["spec"]
    created = kube.core.create_namespaced_pod(spec.namespace, pod)
    name = created.metadata.name
    deadline = time.monotonic() + timeout_s
    while True:
        phase = kube.core.read_namespaced_pod(name, spec.namespace).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        assert time.monotonic() < deadline, f"deployer pod {name} still {phase} after {timeout_s}s"
        time.sleep(3)
    logs = kube.core.read_namespaced_pod_log(name, spec.namespace, _preload_content=False).data.decode()
    assert phase == "Succeeded", f"deployer pod failed:\n{logs[-3000:]}"
    lines = logs.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the CLI prints the result last, as JSON
    result, _ = json.JSONDecoder().raw_decode("\n".join(lines[start:]))  # log lines may follow it
    return result


def _node_port(kube, spec):
    from detectops.deploy.smoke import smoke_targets

    (target,) = smoke_targets(kube, spec.namespace, spec.service, spec.port, "nodeport")
    assert target.label.startswith("http://127.0.0.1:")  # loopback: never a ClusterIP from the host
    return target


def test_deploy_serve_and_roll_back(kube, namespace, good_image, broken_image) -> None:
    from detectops.deploy import DeploymentRolledBack, deploy, smoke_test

    spec = _spec(good_image, namespace, expect_label="person")
    # -- 2. the deployer pod, with only its namespaced Role and no host network, rolls out the good image
    result = _run_deployer_pod(kube, spec, deployer_image=good_image.pinned)
    print("deployer pod result:", json.dumps(result, indent=1))
    assert result["image"] == good_image.pinned
    assert result["ready_replicas"] == 1 and result["previous_image"] is None
    assert "person" in result["smoke"]["labels"]
    cluster_ip = kube.core.read_namespaced_service(NAME, namespace).spec.cluster_ip
    assert result["smoke"]["targets"] == [f"http://{cluster_ip}:8080"]  # through the Service, from a pod

    dep = kube.apps.read_namespaced_deployment(NAME, namespace)
    assert dep.metadata.annotations["detectops.io/image-digest"] == good_image.digest
    good_revision = int(dep.metadata.annotations["deployment.kubernetes.io/revision"])

    # -- 3. from the host: the astronaut through the NodePort on loopback
    target = _node_port(kube, spec)
    photo = astronaut_jpeg()
    body = json.dumps({"instances": [{"b64": base64.b64encode(photo).decode()}]}).encode()
    status, raw = target.request("POST", "/v1/models/detector:predict", body, {"Content-Type": "application/json"})
    assert status == 200, raw[:300]
    (prediction,) = json.loads(raw)["predictions"]
    assert prediction["num_detections"] == 2 and prediction["detection_classes"][0] == 1
    form, ctype = multipart(photo)
    status, raw = target.request("POST", "/detect", form, {"Content-Type": ctype})
    assert status == 200 and "person" in [d["label"] for d in json.loads(raw)["detections"]]
    assert "person" in smoke_test(kube, spec, via="nodeport", log=lambda _: None).labels

    # -- 4. a broken image is rolled back automatically; the good one keeps serving
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(DeploymentRolledBack) as err:
        deploy(_spec(broken_image, namespace, rollout_timeout_s=240), smoke_via="nodeport", kube=kube,
               log=lines.append)
    elapsed = time.monotonic() - started
    print(f"rolled back in {elapsed:.1f}s:\n{err.value}")
    assert err.value.reason in ("CrashLoopBackOff", "ContainerExited", "PodFailed", "Error")
    assert err.value.rolled_back_to is not None and err.value.rolled_back_to.image == good_image.pinned
    message = str(err.value)
    assert "/nonexistent" in message  # the container's own log line says why
    assert f"Rolled back to revision {good_revision}" in message
    assert elapsed < 200, f"the failure should be caught early, not at the deadline ({elapsed:.0f}s)"

    dep = kube.apps.read_namespaced_deployment(NAME, namespace)
    assert dep.spec.template.spec.containers[0].image == good_image.pinned
    assert dep.metadata.annotations["detectops.io/image-digest"] == good_image.digest
    assert (dep.status.available_replicas or 0) == 1
    status, raw = _node_port(kube, spec).request("POST", "/detect", form, {"Content-Type": ctype})
    assert status == 200 and "person" in [d["label"] for d in json.loads(raw)["detections"]]

    # -- idempotent: deploying the good image again changes nothing, keeps the NodePort, and passes
    node_port = _node_port(kube, spec).label
    again = deploy(spec, smoke_via="nodeport", kube=kube, log=lambda _: None)
    assert again.image == good_image.pinned and again.previous_image == good_image.pinned
    assert _node_port(kube, spec).label == node_port


def test_deploy_lock_on_the_real_lease_api(kube) -> None:
    from detectops.deploy.lock import release, status, try_acquire

    model = f"lock-it-{uuid.uuid4().hex[:6]}"
    try:
        assert try_acquire(kube, model, "dag-a/run-1").holder == "dag-a/run-1"
        assert try_acquire(kube, model, "dag-b/run-9").holder == "dag-a/run-1"  # the other one waits
        assert release(kube, model, "dag-b/run-9") is False
        assert release(kube, model, "dag-a/run-1") is True and status(kube, model).holder is None
        assert try_acquire(kube, model, "dag-b/run-9").holder == "dag-b/run-9"
    finally:
        release(kube, model, "dag-a/run-1")
        release(kube, model, "dag-b/run-9")


def test_real_detector_finds_the_person_in_the_astronaut_photo(kube, namespace) -> None:
    """The offline pre-trained CenterNet (COCO) baked into the image: the smoke test expects a person."""
    from detectops.build import build_and_push
    from detectops.deploy import deploy
    from detectops.models import fetch_model

    env = infra_env()
    model = fetch_model("centernet")  # cached after the first run; npm registry otherwise
    ref = build_and_push(model.path, registry=env["DETECTOPS_REGISTRY"], model_version="centernet-1",
                         log=lambda _: None)
    result = deploy(_spec(ref, namespace, model_version="centernet-1", expect_label="person", rollout_timeout_s=240),
                    smoke_via="nodeport", kube=kube, log=lambda _: None)
    assert result.image == ref.pinned and result.ready_replicas == 1
    assert "person" in result.smoke["labels"]
    assert result.smoke["targets"][0].startswith("http://127.0.0.1:")
