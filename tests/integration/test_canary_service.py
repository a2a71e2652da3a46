"""A canary behind the one production Service, on the real cluster (detectops.deploy.canary).

1. The tiny-detector image is deployed as the stable track (2 replicas) through the one deploy
   path; a canary (1 replica) of a second image — the same model, reporting version 2 — starts
   beside it as ``<deployment>-canary``, smoke-tested pod by pod.
2. Requests through the Service's NodePort on 127.0.0.1 (a new connection each, so kube-proxy
   picks an endpoint for each) are answered by both tracks in about their replica ratio (1/3 by
   the canary): each ``/detect`` answer names the model version that made it.
3. Rollback: the canary is removed (its prediction log shipped to the store first) while the load
   generator runs: 0 failed requests.
4. Promotion: a canary again, then promoted while the load runs — stable rolls to the canary's
   image by digest (readiness-gated, preStop drain), the canary goes: 0 failed requests, and at
   the end only version 2 answers.
Before the removal, Prometheus (the analysis' own queries) reports model requests of both tracks.

Needs the infrastructure: ``scripts/infra/up.sh`` (writes ``.state/infra/env.sh``).
"""

from __future__ import annotations

import io
import time
import uuid

import pytest

from tests.integration.test_deploy import good_image, kube  # noqa: F401  (fixtures)
from tests.integration.test_image import infra_env
from tests.integration.test_prometheus import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = dict(cpu_request="100m", memory_request="256Mi", cpu_limit="1", memory_limit="1Gi")
SHARE_REQUESTS = 300


@pytest.fixture(scope="module")
def namespace(kube):  # noqa: F811
    from detectops.deploy import prepare_namespace

    ns = f"detectops-canary-test-{uuid.uuid4().hex[:6]}"
    prepare_namespace(ns, kube=kube)
    yield ns
    kube.core.delete_namespace(ns)


@pytest.fixture(scope="module")
def canary_image(good_image):  # noqa: F811
    """The good image reporting model version 2: another digest, and every answer says which track made it."""
    from detectops.build import docker_client, push_image

    tag = f"{good_image.repository}:canary-v2-{good_image.tag}"
    dockerfile = f"FROM {good_image.pinned}\nENV DETECTOPS_MODEL_VERSION=2\n"
    docker_client().images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="host", rm=True)
    return push_image(tag, log=lambda _: None)


def _small_jpeg() -> bytes:
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.new("RGB", (96, 96), (120, 90, 60)).save(buf, format="JPEG")
    return buf.getvalue()


def test_canary_share_rollback_and_promotion_fail_no_request(kube, namespace, good_image, canary_image,  # noqa: F811
                                                             mlflow_server) -> None:
    from detectops.deploy.lock import release, try_acquire

    infra_env()
    t0 = time.monotonic()
    quiet = dict(log=lambda _: None)
    run = uuid.uuid4().hex[:6]
    holder = f"canary-it/{run}"  # the deploy lock's holder, as a DAG run holds it
    model = f"detector-canary-it-{run}"
    assert try_acquire(kube, model, holder).holder == holder
    try:
        _canary_share_rollback_promotion(kube, namespace, good_image, canary_image, mlflow_server, model, holder, quiet)
    finally:
        release(kube, model, holder)
    print(f"canary test: {time.monotonic() - t0:.0f}s")


def _canary_share_rollback_promotion(kube, namespace, good_image, canary_image, mlflow_server,  # noqa: F811
                                     model, holder, quiet) -> None:
    from detectops.deploy import DeploySpec, deploy
    from detectops.deploy.canary import canary_spec, promote_canary, remove_canary, start_canary
    from detectops.deploy.loadgen import LoadGenerator, detect_request, nodeport_url
    from detectops.monitoring.canary_analysis import window_figures
    from detectops.monitoring.prometheus import PrometheusClient

    t0 = time.monotonic()
    stable = DeploySpec(model_name=model, model_version="1", image=good_image.pinned,
                        namespace=namespace, deployment="detector", replicas=2, expect_label="person",
                        resources=SMALL, rollout_timeout_s=180)
    canary = canary_spec(stable, image=canary_image.pinned, model_version="2", replicas=1)
    deploy(stable, smoke_via="nodeport", kube=kube, **quiet)
    started = start_canary(canary, smoke_via="port-forward", holder=holder, kube=kube, **quiet)
    assert started["ready_replicas"] == 1 and "person" in started["smoke"]["labels"]
    assert len(started["smoke"]["targets"]) == 1  # the canary's own pod, not the Service
    t_up = time.monotonic()

    # -- 2. the Service spreads connections over both tracks in about their replica ratio
    url = nodeport_url(kube, namespace, stable.service)
    request = detect_request(_small_jpeg())
    share = LoadGenerator(url, **request, max_requests=SHARE_REQUESTS, max_seconds=60, concurrency=3).start().wait(90)
    print(f"share: {share.to_dict()}")
    assert share.failed == 0 and share.sent == SHARE_REQUESTS
    assert set(share.answered_by) == {"1", "2"}
    # binomial: n=300, p=1/3 -> sd 0.027; the band is about 3.7 sd each side
    assert 0.23 <= share.share("2") <= 0.44, share.answered_by

    # -- 3. rollback: remove the canary under load, once Prometheus sees both tracks (the analysis' queries)
    prom = PrometheusClient()  # DETECTOPS_PROMETHEUS_URL from env.sh (infra_env)

    def both_tracks():
        now = time.time()
        w = window_figures(prom, namespace=namespace, service=stable.service, start=now - 60, end=now)
        return w if w.canary.requests > 0 and w.stable.requests > 0 else None

    with LoadGenerator(url, **request, max_requests=3000, max_seconds=120, concurrency=3, rate_per_s=25) as load:
        figures = eventually(both_tracks, 60, "Prometheus sees model requests of both tracks", interval_s=2)
        print(f"Prometheus, last 60 s: stable {figures.stable.to_dict()}, canary {figures.canary.to_dict()}")
        assert figures.canary.errors == 0 and figures.canary.p99_s is not None and figures.canary.restarts == 0
        removed = remove_canary(canary, tracking_uri=mlflow_server, holder=holder, reason="test rollback", kube=kube,
                                **quiet)
        time.sleep(2)
    during_removal = load.result()
    print(f"removal: {removed}\nload during removal: {during_removal.to_dict()}")
    assert removed["removed"] is True and removed["shipped"]["records"] >= 1
    assert during_removal.failed == 0 and during_removal.sent >= 100, during_removal.first_failures
    assert not kube.apps.list_namespaced_deployment(namespace, label_selector="detectops.io/track=canary").items

    # -- 4. promotion under load
    start_canary(canary, smoke_via="port-forward", holder=holder, kube=kube, **quiet)
    with LoadGenerator(url, **request, max_requests=4000, max_seconds=150, concurrency=3, rate_per_s=25) as load:
        time.sleep(2)
        promoted = promote_canary(stable, canary, tracking_uri=mlflow_server, holder=holder, smoke_via="nodeport",
                                  kube=kube, **quiet)
        switched = time.time()
        time.sleep(3)
    during_promotion = load.result()
    print(f"promotion: {promoted}\nload during promotion: {during_promotion.to_dict()}")
    assert during_promotion.failed == 0 and during_promotion.sent >= 200, during_promotion.first_failures
    assert promoted["deployed"]["image"] == canary_image.pinned and promoted["canary_removed"]["removed"] is True
    after = {s.answered_by for s in load.samples_between(switched, time.time() + 1)}
    assert after == {"2"}, after  # only the promoted version serves
    dep = kube.apps.read_namespaced_deployment("detector", namespace)
    assert dep.metadata.annotations["detectops.io/image-digest"] == canary_image.digest
    assert dep.metadata.labels["detectops.io/track"] == "stable" and dep.status.available_replicas == 2

    print(f"canary test: {t_up - t0:.0f}s to stable + canary, {time.monotonic() - t0:.0f}s in all")
