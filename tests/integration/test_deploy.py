"""detectops.deploy against the real single-node cluster from ``scripts/infra/up.sh``.

1. An admin creates a namespace and the deployer's ServiceAccount/Role/RoleBinding.
2. The deployer runs *as a pod* with only that Role (hostNetwork + in-cluster config, because
   the local cluster has no kube-proxy/DNS), rolls the tiny-detector image out, smoke-tests the
   pods' IPs and prints its DeploymentResult.
3. From the host, through the API server's port-forward (loopback only), the astronaut photo
   goes to ``:predict`` and ``/detect``.
4. A deliberately broken image (its model path does not exist, so the container exits) is
   deployed: the rollout fails early, is rolled back automatically, and the good version keeps
   serving.

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


def _run_deployer_pod(kube, namespace: str, image: str, deployer_image: str, timeout_s: int = 420) -> dict:
    """The deployer pod from include/k8s/serving/deployer-pod.yaml; returns the DeploymentResult it printed."""
    from detectops.deploy import deployer_pod_manifest

    pod = deployer_pod_manifest(deployer_image=deployer_image, image=image, namespace=namespace, name=NAME,
                                timeout_s=300)
    # The pod runs the image's entrypoint as rendered: `detectops deploy --image ... --smoke-via pods`,
    # exactly what KubernetesPodOperator runs.
    assert pod["spec"]["containers"][0]["args"][0] == "deploy"
    created = kube.core.create_namespaced_pod(namespace, pod)
    name = created.metadata.name
    deadline = time.monotonic() + timeout_s
    while True:
        phase = kube.core.read_namespaced_pod(name, namespace).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        assert time.monotonic() < deadline, f"deployer pod {name} still {phase} after {timeout_s}s"
        time.sleep(3)
    logs = kube.core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()
    assert phase == "Succeeded", f"deployer pod failed:\n{logs[-3000:]}"
    lines = logs.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the CLI prints the result last, as JSON
    result, _ = json.JSONDecoder().raw_decode("\n".join(lines[start:]))  # log lines may follow it
    return result


def _forwarded(kube, namespace: str):
    from detectops.deploy.smoke import smoke_targets

    (target,) = smoke_targets(kube, namespace, NAME, 8080, "port-forward")
    return target


def test_deploy_serve_and_roll_back(kube, namespace, good_image, broken_image) -> None:
    from detectops.deploy import DeploymentRolledBack, deploy

    # -- 2. the deployer pod, with only its namespaced Role, rolls out the good image
    result = _run_deployer_pod(kube, namespace, good_image.pinned, deployer_image=good_image.pinned)
    print("deployer pod result:", json.dumps(result, indent=1))
    assert result["image"] == good_image.pinned
    assert result["ready_replicas"] == 1 and result["previous_image"] is None
    assert "person" in result["smoke"]["labels"]
    assert result["smoke"]["targets"][0].startswith("http://")  # a pod IP: --smoke-via pods

    dep = kube.apps.read_namespaced_deployment(NAME, namespace)
    assert dep.metadata.annotations["detectops.io/image-digest"] == good_image.digest
    good_revision = int(dep.metadata.annotations["deployment.kubernetes.io/revision"])

    # -- 3. from the host: the astronaut through port-forward (loopback only)
    target = _forwarded(kube, namespace)
    photo = astronaut_jpeg()
    body = json.dumps({"instances": [{"b64": base64.b64encode(photo).decode()}]}).encode()
    status, raw = target.request("POST", "/v1/models/detector:predict", body, {"Content-Type": "application/json"})
    assert status == 200, raw[:300]
    (prediction,) = json.loads(raw)["predictions"]
    assert prediction["num_detections"] == 2 and prediction["detection_classes"][0] == 1
    form, ctype = multipart(photo)
    status, raw = target.request("POST", "/detect", form, {"Content-Type": ctype})
    assert status == 200 and "person" in [d["label"] for d in json.loads(raw)["detections"]]

    # -- 4. a broken image is rolled back automatically; the good one keeps serving
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(DeploymentRolledBack) as err:
        deploy(broken_image.pinned, namespace, NAME, timeout_s=240, smoke_via="port-forward",
               kube=kube, log=lines.append)
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
    status, raw = _forwarded(kube, namespace).request("POST", "/detect", form, {"Content-Type": ctype})
    assert status == 200 and "person" in [d["label"] for d in json.loads(raw)["detections"]]

    # -- idempotent: deploying the good image again changes nothing and passes
    again = deploy(good_image.pinned, namespace, NAME, smoke_via="port-forward", kube=kube, log=lambda _: None)
    assert again.image == good_image.pinned and again.previous_image == good_image.pinned


def test_real_detector_finds_the_person_in_the_astronaut_photo(kube, namespace) -> None:
    """The offline pre-trained CenterNet (COCO) baked into the image: the smoke test expects a person."""
    from detectops.build import build_and_push
    from detectops.deploy import deploy
    from detectops.models import fetch_model

    env = infra_env()
    model = fetch_model("centernet")  # cached after the first run; npm registry otherwise
    ref = build_and_push(model.path, registry=env["DETECTOPS_REGISTRY"], model_version="centernet-1",
                         log=lambda _: None)
    result = deploy(ref.pinned, namespace, NAME, model_version="centernet-1", smoke_via="port-forward",
                    expect_label="person", timeout_s=240, kube=kube, log=lambda _: None)
    assert result.image == ref.pinned and result.ready_replicas == 1
    assert "person" in result.smoke["labels"]
    assert result.smoke["targets"][0].startswith("port-forward pod/")
