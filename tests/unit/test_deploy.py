"""Unit tests of detectops.deploy: manifests, RBAC scope, failure detection, rollback, orchestration.

The cluster's answers are the kubernetes SDK's own model objects (V1Deployment, V1Pod, ...), so
the code under test reads exactly the attributes it reads from a real API server.
tests/integration/test_deploy.py runs all of it against the real cluster.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from kubernetes import client as k

import detectops.deploy as deploy_mod
from detectops.deploy import DeploymentRolledBack, DeploySpec, rbac_manifests, serving_manifests
from detectops.deploy import rollout, smoke
from detectops.deploy.rollout import Revision, RolloutFailed, pod_problem
from detectops.errors import DeployError
from tests.support.http_stub import send_json

IMAGE = "127.0.0.1:5000/detectops/detector@sha256:" + "ab" * 32
SPEC = DeploySpec(model_name="detector", model_version="7", image=IMAGE, namespace="ns")


def now() -> datetime:
    """The time at the moment of the call: pod ages are measured against the clock."""
    return datetime.now(timezone.utc)


# -- manifests --------------------------------------------------------------------------------------
def test_deployment_is_hardened_probed_and_annotated() -> None:
    dep, svc = serving_manifests(SPEC.with_changes(namespace="prod", replicas=2, score_threshold=0.4))
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert spec["replicas"] == 2 and spec["revisionHistoryLimit"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # old version serves until new is ready
    assert c["image"] == IMAGE
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(c["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    assert {"name": "DETECTOPS_MIN_SCORE", "value": "0.4"} in c["env"]
    assert dep["metadata"]["annotations"]["detectops.io/model-version"] == "7"
    assert dep["metadata"]["annotations"]["detectops.io/image-digest"] == "sha256:" + "ab" * 32
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/name": "detector"}
    assert dep["metadata"]["namespace"] == svc["metadata"]["namespace"] == "prod"
    assert dep["metadata"]["annotations"]["detectops.io/model-name"] == "detector"


def test_service_is_a_nodeport_that_selects_every_track_of_the_model() -> None:
    stable, svc = serving_manifests(SPEC)
    canary, canary_svc = serving_manifests(SPEC.with_changes(deployment="detector-canary", service="detector",
                                                             track="canary"))
    assert svc == canary_svc  # one Service in front of both tracks
    assert svc["spec"]["type"] == "NodePort" and svc["metadata"]["name"] == "detector"
    assert "nodePort" not in svc["spec"]["ports"][0]  # assigned by the API server, kept on replace
    for dep, track in ((stable, "stable"), (canary, "canary")):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert labels["detectops.io/track"] == track
        # each Deployment owns only its own pods
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert stable["spec"]["selector"] != canary["spec"]["selector"]


def test_invalid_names_are_refused_with_a_reason() -> None:
    with pytest.raises(DeployError, match="not a valid Kubernetes name"):
        serving_manifests(SPEC.with_changes(namespace="Prod_1"))


def test_deployer_role_is_namespaced_and_minimal() -> None:
    sa, role, binding = rbac_manifests("prod")
    assert (sa["kind"], role["kind"], binding["kind"]) == ("ServiceAccount", "Role", "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "prod"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "detectops-deployer", "namespace": "prod"}]
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    assert set(granted) == {("apps", "deployments"), ("apps", "replicasets"), ("", "pods"), ("", "pods/log"),
                            ("", "services"), ("", "endpoints"), ("", "events")}
    assert all("*" not in verbs and "delete" not in verbs and "deletecollection" not in verbs
               for verbs in granted.values())
    assert granted[("apps", "replicasets")] <= {"get", "list", "watch"}  # read-only


def test_deployer_pod_is_an_ordinary_pod_running_the_spec() -> None:
    pod = deploy_mod.deployer_pod_manifest(deployer_image="img:1", spec=SPEC.with_changes(namespace="prod"))
    assert pod["spec"]["serviceAccountName"] == "detectops-deployer"
    assert "hostNetwork" not in pod["spec"]  # in-cluster config through the `kubernetes` Service
    assert "env" not in pod["spec"]["containers"][0]
    args = pod["spec"]["containers"][0]["args"]
    assert args[:2] == ["deploy", "--spec"] and DeploySpec.from_json(args[2]) == SPEC.with_changes(namespace="prod")


# -- failure detection ------------------------------------------------------------------------------------
def _pod(name="p", *, phase="Running", waiting=None, restarts=0, last_exit=None, running_since=None,
         ready=False) -> k.V1Pod:
    state = k.V1ContainerState(
        waiting=k.V1ContainerStateWaiting(reason=waiting, message=f"{waiting} msg") if waiting else None,
        running=k.V1ContainerStateRunning(started_at=running_since) if running_since else None)
    last = k.V1ContainerState(terminated=k.V1ContainerStateTerminated(exit_code=last_exit, reason="Error")) \
        if last_exit is not None else k.V1ContainerState()
    cs = k.V1ContainerStatus(name="detector", image="i", image_id="", ready=ready, restart_count=restarts,
                             state=state, last_state=last)
    return k.V1Pod(metadata=k.V1ObjectMeta(name=name, namespace="ns"),
                   status=k.V1PodStatus(phase=phase, container_statuses=[cs]))


@pytest.mark.parametrize("reason", ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"])
def test_fatal_waiting_reasons_are_reported(reason: str) -> None:
    problem = pod_problem(_pod(waiting=reason, restarts=1, last_exit=1), unready_after_s=60)
    assert problem is not None and problem[0] == reason and "last exit code 1" in problem[1]


def test_starting_pods_are_not_failures() -> None:
    assert pod_problem(_pod(waiting="ContainerCreating"), unready_after_s=60) is None
    assert pod_problem(_pod(running_since=now() - timedelta(seconds=5)), unready_after_s=60) is None
    assert pod_problem(_pod(running_since=now() - timedelta(seconds=5), ready=True), unready_after_s=60) is None


def test_readiness_that_never_passes_is_a_failure() -> None:
    problem = pod_problem(_pod(running_since=now() - timedelta(seconds=90)), unready_after_s=60)
    assert problem is not None and problem[0] == "ReadinessFailing" and "/readyz" in problem[1]


def test_a_restarted_container_is_a_failure() -> None:
    problem = pod_problem(_pod(running_since=now(), restarts=1, last_exit=2), unready_after_s=60)
    assert problem is not None and problem[0] == "ContainerExited"


# -- a fake API server made of SDK models -------------------------------------------------------------------
UID = "uid-1"


def _rs(revision: int, image: str, hash_: str) -> k.V1ReplicaSet:
    template = k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(labels={"app.kubernetes.io/name": "detector", "pod-template-hash": hash_}),
        spec=k.V1PodSpec(containers=[k.V1Container(name="detector", image=image)]))
    return k.V1ReplicaSet(
        metadata=k.V1ObjectMeta(name=f"detector-{hash_}", namespace="ns", labels={"pod-template-hash": hash_},
                                annotations={rollout.REVISION: str(revision), "detectops.io/image": image},
                                owner_references=[k.V1OwnerReference(api_version="apps/v1", kind="Deployment",
                                                                     name="detector", uid=UID)]),
        spec=k.V1ReplicaSetSpec(selector=k.V1LabelSelector(match_labels={}), template=template))


class FakeApps:
    def __init__(self, deployments: list[k.V1Deployment], rss: list[k.V1ReplicaSet]) -> None:
        self.deployments = deployments  # successive reads
        self.rss = rss
        self.patches: list = []

    def read_namespaced_deployment(self, name, namespace):
        return self.deployments.pop(0) if len(self.deployments) > 1 else self.deployments[0]

    def list_namespaced_replica_set(self, namespace, label_selector=None):
        return SimpleNamespace(items=self.rss)

    def patch_namespaced_deployment(self, name, namespace, body):
        self.patches.append(body)
        return SimpleNamespace(metadata=SimpleNamespace(generation=9))


class FakeCore:
    def __init__(self, pods: list[k.V1Pod]) -> None:
        self.pods = pods

    def list_namespaced_pod(self, namespace, label_selector=None):
        return SimpleNamespace(items=self.pods)

    def list_namespaced_event(self, namespace, field_selector=None):
        return SimpleNamespace(items=[k.CoreV1Event(
            metadata=k.V1ObjectMeta(name="e"), involved_object=k.V1ObjectReference(name="p"),
            type="Warning", reason="BackOff", message="Back-off restarting failed container", count=4,
            last_timestamp=now())])

    def read_namespaced_pod_log(self, name, namespace, tail_lines=None, previous=False, _preload_content=True):
        return SimpleNamespace(data=b"ServeConfigError: DETECTOPS_MODEL_DIR=/nope does not exist\n")


def _deployment(revision: int, image: str, *, generation=2, observed=2, updated=1, total=1, available=1,
                conditions=None) -> k.V1Deployment:
    return k.V1Deployment(
        metadata=k.V1ObjectMeta(name="detector", namespace="ns", uid=UID, generation=generation,
                                resource_version="42",
                                annotations={rollout.REVISION: str(revision), "detectops.io/image": image}),
        spec=k.V1DeploymentSpec(replicas=1, selector=k.V1LabelSelector(match_labels={"app.kubernetes.io/name": "detector"}),
                                template=k.V1PodTemplateSpec(spec=k.V1PodSpec(containers=[k.V1Container(name="d", image=image)]))),
        status=k.V1DeploymentStatus(observed_generation=observed, updated_replicas=updated, replicas=total,
                                    available_replicas=available, ready_replicas=available, conditions=conditions))


def _kube(deployments, rss, pods=()):
    return SimpleNamespace(apps=FakeApps(list(deployments), list(rss)), core=FakeCore(list(pods)),
                           api_client=k.ApiClient())


def test_rollout_completes_when_all_replicas_are_updated_and_available() -> None:
    kube = _kube([_deployment(2, "new", observed=1, available=0),  # controller has not seen it yet
                  _deployment(2, "new", updated=1, total=2, available=1),  # old pod still there
                  _deployment(2, "new")], [_rs(1, "old", "a"), _rs(2, "new", "b")],
                 [_pod(running_since=now())])
    dep = rollout.wait_for_rollout(kube, "detector", "ns", generation=2, timeout_s=10, poll_s=0, log=lambda _: None)
    assert dep.status.available_replicas == 1


def test_rollout_fails_early_with_the_pods_reason_events_and_logs() -> None:
    kube = _kube([_deployment(2, "bad", updated=1, total=2, available=1)], [_rs(1, "old", "a"), _rs(2, "bad", "b")],
                 [_pod(waiting="CrashLoopBackOff", restarts=3, last_exit=1)])
    with pytest.raises(RolloutFailed) as err:
        rollout.wait_for_rollout(kube, "detector", "ns", generation=2, timeout_s=60, poll_s=0, log=lambda _: None)
    assert err.value.reason == "CrashLoopBackOff"
    assert "Back-off restarting failed container" in err.value.detail  # the event
    assert "DETECTOPS_MODEL_DIR=/nope" in err.value.detail  # the crashed container's log


def test_rollout_reports_progress_deadline_exceeded() -> None:
    cond = k.V1DeploymentCondition(type="Progressing", status="False", reason="ProgressDeadlineExceeded",
                                   message='ReplicaSet "detector-b" has timed out progressing.')
    kube = _kube([_deployment(2, "bad", updated=1, total=2, available=1, conditions=[cond])], [_rs(2, "bad", "b")])
    with pytest.raises(RolloutFailed, match="timed out progressing"):
        rollout.wait_for_rollout(kube, "detector", "ns", generation=2, timeout_s=60, poll_s=0, log=lambda _: None)


def test_rollback_writes_the_previous_template_back_without_its_hash() -> None:
    kube = _kube([_deployment(3, "bad")], [_rs(1, "v1", "a"), _rs(2, "v2", "b"), _rs(3, "bad", "c")])
    target, generation = rollout.rollback(kube, "detector", "ns", log=lambda _: None)
    assert (target.number, target.image, generation) == (2, "v2", 9)
    (patch,) = kube.apps.patches
    ops = {op["path"]: op for op in patch}
    assert ops["/metadata/resourceVersion"]["op"] == "test"  # no lost update if someone else changed it
    template = ops["/spec/template"]["value"]
    assert template["spec"]["containers"][0]["image"] == "v2"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert ops["/metadata/annotations"]["value"]["detectops.io/image"] == "v2"


def test_rollback_to_a_named_revision_and_nothing_to_roll_back_to() -> None:
    kube = _kube([_deployment(3, "bad")], [_rs(1, "v1", "a"), _rs(2, "v2", "b"), _rs(3, "bad", "c")])
    assert rollout.rollback(kube, "detector", "ns", to_revision=1, log=lambda _: None)[0].image == "v1"
    first = _kube([_deployment(1, "bad")], [_rs(1, "bad", "a")])
    assert rollout.rollback(first, "detector", "ns", log=lambda _: None) is None


# -- deploy(): the orchestration -----------------------------------------------------------------------------
@pytest.fixture
def wired(monkeypatch):
    """deploy() with the cluster calls replaced; records what was called."""
    calls: dict = {"applied": [], "rollback": [], "waits": 0}
    state = {"before": Revision(4, "old-image", "rs-old"), "after": Revision(5, IMAGE, "rs-new"),
             "rollout_error": None, "smoke_error": None}

    def current_revision(kube, name, namespace):
        return state["before"] if not calls["applied"] else state["after"]

    def apply(kube, obj):
        calls["applied"].append(obj["kind"])
        return SimpleNamespace(metadata=SimpleNamespace(generation=5))

    def wait(kube, name, namespace, *, generation, **kw):
        calls["waits"] += 1
        if calls["waits"] == 1 and state["rollout_error"]:
            raise state["rollout_error"]
        return _deployment(5 if calls["waits"] == 1 else 6, IMAGE)

    def smoke_test(kube, spec, **kw):
        if state["smoke_error"]:
            raise state["smoke_error"]
        return smoke.SmokeResult(targets=["http://10.0.0.5:8080"], num_detections=2, labels=["person", "dog"],
                                 latency_ms=12.0)

    def rollback(kube, name, namespace, *, to_revision=None, log=None):
        calls["rollback"].append(to_revision)
        return (state["before"], 7)

    monkeypatch.setattr(deploy_mod, "current_revision", current_revision)
    monkeypatch.setattr(deploy_mod, "apply", apply)
    monkeypatch.setattr(deploy_mod, "wait_for_rollout", wait)
    monkeypatch.setattr(deploy_mod, "smoke_test", smoke_test)
    monkeypatch.setattr(deploy_mod, "rollback", rollback)
    return calls, state


def test_deploy_returns_what_serves_and_what_it_replaced(wired) -> None:
    calls, _ = wired
    result = deploy_mod.deploy(SPEC, kube=object(), log=lambda _: None)
    assert calls["applied"] == ["Service", "Deployment"] and calls["rollback"] == []
    assert (result.image, result.revision, result.previous_image, result.previous_revision) == (IMAGE, 5, "old-image", 4)
    assert result.smoke["labels"] == ["person", "dog"]
    assert json.loads(json.dumps(result.to_dict()))["smoke"]["num_detections"] == 2  # XCom-safe


def test_failed_rollout_rolls_back_to_the_previous_revision(wired) -> None:
    calls, state = wired
    state["rollout_error"] = RolloutFailed("CrashLoopBackOff", "pod p: exit 1")
    with pytest.raises(DeploymentRolledBack) as err:
        deploy_mod.deploy(SPEC, kube=object(), log=lambda _: None)
    assert calls["rollback"] == [4] and calls["waits"] == 2  # waited for the rollback too
    assert err.value.reason == "CrashLoopBackOff" and err.value.rolled_back_to.image == "old-image"
    assert "Rolled back to revision 4 (old-image)" in str(err.value)


def test_failed_smoke_test_rolls_back_too(wired) -> None:
    calls, state = wired
    state["smoke_error"] = smoke.SmokeFailed("ExpectedLabelMissing", "found ['dog'], expected a 'person'")
    with pytest.raises(DeploymentRolledBack, match="smoke test: ExpectedLabelMissing"):
        deploy_mod.deploy(SPEC.with_changes(expect_label="person"), kube=object(), log=lambda _: None)
    assert calls["rollback"] == [4]


def test_first_deployment_failure_is_not_rolled_back(wired) -> None:
    calls, state = wired
    state["before"] = None
    state["rollout_error"] = RolloutFailed("ImagePullBackOff", "no such image")
    with pytest.raises(DeploymentRolledBack, match="first deployment") as err:
        deploy_mod.deploy(SPEC, kube=object(), log=lambda _: None)
    assert calls["rollback"] == [] and err.value.rolled_back_to is None


def test_unchanged_template_failing_is_not_rolled_back(wired) -> None:
    calls, state = wired
    state["after"] = state["before"]  # re-deploying what already runs
    state["smoke_error"] = smoke.SmokeFailed("Unreachable", "timed out")
    with pytest.raises(DeploymentRolledBack, match="nothing was\\s+rolled back"):
        deploy_mod.deploy(SPEC, kube=object(), log=lambda _: None)
    assert calls["rollback"] == []


def test_cli_takes_the_spec_as_json_or_a_file(monkeypatch, tmp_path) -> None:
    import argparse

    seen = {}
    monkeypatch.setattr(deploy_mod, "deploy", lambda spec, **kw: seen.update(spec=spec, **kw)
                        or SimpleNamespace(to_dict=lambda: {"ok": True}))
    parser = deploy_mod.configure_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--spec", SPEC.to_json(), "--smoke-via", "nodeport"])
    assert deploy_mod.run_from_args(args) == {"ok": True, "rolled_back": False}
    assert seen["spec"] == SPEC and seen["smoke_via"] == "nodeport"
    path = tmp_path / "spec.json"
    path.write_text(SPEC.to_json())
    deploy_mod.run_from_args(parser.parse_args(["--spec", f"@{path}"]))
    assert seen["spec"] == SPEC and seen["smoke_via"] == "service"  # the ClusterIP, from inside the cluster
    with pytest.raises(DeployError, match="not valid JSON"):
        deploy_mod.run_from_args(parser.parse_args(["--spec", "{model_name: x}"]))


def test_cli_records_a_rollback_as_a_result_only_when_asked(monkeypatch) -> None:
    import argparse

    def rolled_back(spec, **kw):
        raise DeploymentRolledBack("deploying failed (rollout: CrashLoopBackOff). Rolled back to revision 4",
                                   reason="CrashLoopBackOff", rolled_back_to=Revision(4, "old-image", "rs-old"))

    monkeypatch.setattr(deploy_mod, "deploy", rolled_back)
    parser = deploy_mod.configure_parser(argparse.ArgumentParser())
    with pytest.raises(DeploymentRolledBack):  # by hand: a rollback is an error (exit 2)
        deploy_mod.run_from_args(parser.parse_args(["--spec", SPEC.to_json()]))
    record = deploy_mod.run_from_args(parser.parse_args(["--spec", SPEC.to_json(), "--record-rollback"]))
    assert record["rolled_back"] is True and record["reason"] == "CrashLoopBackOff"
    assert (record["serving_image"], record["serving_revision"]) == ("old-image", 4)
    assert json.loads(json.dumps(record)) == record


# -- smoke checks against an HTTP server speaking the serving API ----------------------------------------------
class _Service(BaseHTTPRequestHandler):
    labels = ["person"]

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: dict) -> None:
        send_json(self, status, body)

    def do_GET(self) -> None:
        self._send(200 if self.path == "/readyz" else 404, {"status": "ready"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/models/detector:predict":
            assert json.loads(body)["instances"][0]["b64"]
            self._send(200, {"predictions": [{"detection_boxes": [[0, 0, 1, 1]], "detection_classes": [1],
                                              "detection_scores": [0.9], "num_detections": 1}]})
        elif self.path == "/detect":
            assert b'filename="smoke.jpg"' in body and b"\xff\xd8" in body  # a real JPEG upload
            self._send(200, {"detections": [{"label": lab} for lab in self.labels]})
        else:
            self._send(404, {"error": "no"})


@pytest.fixture
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield smoke.UrlTarget(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    _Service.labels = ["person"]


def test_smoke_checks_pass_on_a_good_service(service) -> None:
    image = smoke.DEFAULT_IMAGE.read_bytes()
    n, labels, latency, checks = smoke.check_target(service, image, model_name="detector", min_detections=1,
                                                    expect_label="person")
    assert (n, labels) == (1, ["person"]) and latency > 0 and len(checks) == 3


def test_smoke_checks_fail_on_a_missing_label_or_wrong_model_name(service) -> None:
    image = smoke.DEFAULT_IMAGE.read_bytes()
    _Service.labels = ["dog"]
    with pytest.raises(smoke.SmokeFailed, match="expected a 'person'"):
        smoke.check_target(service, image, model_name="detector", min_detections=1, expect_label="person")
    with pytest.raises(smoke.SmokeFailed, match="HTTP 404"):
        smoke.check_target(service, image, model_name="other", min_detections=1, expect_label=None)


def test_smoke_targets_are_the_ready_endpoints() -> None:
    ep = k.V1Endpoints(subsets=[k.V1EndpointSubset(
        addresses=[k.V1EndpointAddress(ip="10.88.0.7", target_ref=k.V1ObjectReference(name="detector-abc"))],
        not_ready_addresses=[k.V1EndpointAddress(ip="10.88.0.8")])])
    svc = k.V1Service(spec=k.V1ServiceSpec(type="NodePort", cluster_ip="10.0.0.42", ports=[
        k.V1ServicePort(name="http", port=8080, node_port=31234)]))
    kube = SimpleNamespace(core=SimpleNamespace(read_namespaced_endpoints=lambda name, ns: ep,
                                                read_namespaced_service=lambda name, ns: svc))
    assert [t.label for t in smoke.smoke_targets(kube, "ns", "detector", 8080, "pods")] == ["http://10.88.0.7:8080"]
    # in the cluster: the Service's ClusterIP (no DNS); from the host: its NodePort on loopback
    assert [t.label for t in smoke.smoke_targets(kube, "ns", "detector", 8080, "service")] == \
        ["http://10.0.0.42:8080"]
    assert [t.label for t in smoke.smoke_targets(kube, "ns", "detector", 8080, "nodeport")] == \
        ["http://127.0.0.1:31234"]
    assert [t.label for t in smoke.smoke_targets(kube, "ns", "detector", 8080, "port-forward")] == \
        ["port-forward pod/detector-abc:8080"]


def test_log_tail_falls_back_to_the_current_run_when_the_previous_is_gone() -> None:
    calls = []

    class Core:
        def read_namespaced_pod_log(self, name, namespace, tail_lines=None, previous=False, _preload_content=True):
            calls.append(previous)
            text = b"unable to retrieve container logs for containerd://abc" if previous else b"the real error\n"
            return SimpleNamespace(data=text)

    kube = SimpleNamespace(core=Core())
    assert rollout.log_tail(kube, _pod(restarts=1, last_exit=2)) == "the real error"
    assert calls == [True, False]


def test_replacing_a_service_keeps_its_cluster_ip_and_node_port() -> None:
    from detectops.deploy.kube import apply

    live = k.V1Service(metadata=k.V1ObjectMeta(name="detector", namespace="ns", resource_version="9"),
                       spec=k.V1ServiceSpec(type="NodePort", cluster_ip="10.0.0.42",
                                            ports=[k.V1ServicePort(name="http", port=8080, node_port=31234)]))
    replaced = {}

    class Api:  # the calls a Service apply makes; apply's dispatch table names the others
        def __getattr__(self, name):
            return None

        def read_namespaced_service(self, name, namespace):
            return live

        def replace_namespaced_service(self, name, body, namespace):
            replaced.update(body)
            return body

    _, svc = serving_manifests(SPEC)
    apply(SimpleNamespace(core=Api(), apps=Api(), rbac=Api()), svc)
    assert replaced["spec"]["clusterIP"] == "10.0.0.42"
    assert replaced["spec"]["ports"][0]["nodePort"] == 31234  # clients of the old port keep the service
    assert replaced["metadata"]["resourceVersion"] == "9"


def test_a_service_without_a_node_port_cannot_be_smoke_tested_from_the_host() -> None:
    svc = k.V1Service(spec=k.V1ServiceSpec(type="ClusterIP", cluster_ip="10.0.0.42",
                                           ports=[k.V1ServicePort(name="http", port=8080)]))
    kube = SimpleNamespace(core=SimpleNamespace(read_namespaced_service=lambda name, ns: svc))
    with pytest.raises(smoke.SmokeFailed, match="no nodePort.*type NodePort"):
        smoke.smoke_targets(kube, "ns", "detector", 8080, "nodeport")
