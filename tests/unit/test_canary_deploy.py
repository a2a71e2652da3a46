"""Canary manifests and the start / remove / promote steps (detectops.deploy.canary), without a cluster."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from detectops.deploy import DeploymentRolledBack, DeploySpec, serving_manifests
from detectops.deploy import canary as canary_mod
from detectops.deploy.canary import CanaryFailed, canary_spec, promoted_spec
from detectops.deploy.rollout import RolloutFailed
from detectops.deploy.smoke import SmokeFailed
from detectops.errors import DeployError

OLD = "127.0.0.1:5000/detectops/detector@sha256:" + "ab" * 32
NEW = "127.0.0.1:5000/detectops/detector@sha256:" + "cd" * 32
STABLE = DeploySpec(model_name="detector", model_version="7", image=OLD, namespace="prod", replicas=2,
                    expect_label="person")
CANARY = canary_spec(STABLE, image=NEW, model_version="8", replicas=1, env={"DETECTOPS_MAX_QUEUE": "8"})


def test_canary_is_a_second_deployment_behind_the_same_service() -> None:
    assert (CANARY.deployment, CANARY.service, CANARY.track) == ("detector-canary", "detector", "canary")
    assert (CANARY.image, CANARY.model_version, CANARY.replicas) == (NEW, "8", 1)
    assert CANARY.expect_label == "person" and CANARY.namespace == "prod"  # the rest comes from stable
    stable_dep, stable_svc = serving_manifests(STABLE)
    dep, svc = serving_manifests(CANARY)
    assert svc == stable_svc and svc["spec"]["selector"] == {"detectops.io/service": "detector"}
    assert dep["metadata"]["name"] == "detector-canary" and dep["metadata"]["labels"]["detectops.io/track"] == "canary"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["detectops.io/track"] == "canary" and labels["detectops.io/service"] == "detector"
    assert svc["spec"]["selector"].items() <= labels.items()  # the Service sends it traffic
    stable_labels = stable_dep["spec"]["template"]["metadata"]["labels"]
    # neither Deployment selects the other's pods
    assert not dep["spec"]["selector"]["matchLabels"].items() <= stable_labels.items()
    assert not stable_dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert dep["metadata"]["annotations"]["detectops.io/image-digest"] == "sha256:" + "cd" * 32
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DETECTOPS_MAX_QUEUE"] == "8"


def test_serving_pods_drain_before_sigterm_within_the_grace_period() -> None:
    dep, _ = serving_manifests(CANARY)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and 2 <= int(command[1]) < pod["terminationGracePeriodSeconds"] - 5
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_promoted_spec_is_the_canary_version_in_the_stable_place() -> None:
    target = promoted_spec(STABLE, CANARY.to_dict())
    assert (target.deployment, target.track, target.replicas) == ("detector", "stable", 2)
    assert (target.image, target.model_version, target.env) == (NEW, "8", {"DETECTOPS_MAX_QUEUE": "8"})


def test_canary_specs_are_checked() -> None:
    with pytest.raises(DeployError, match="starts from the stable track"):
        canary_spec(CANARY, image=NEW, model_version="9")
    with pytest.raises(DeployError, match="not behind the stable track's Service"):
        promoted_spec(STABLE, CANARY.with_changes(service="other"))
    with pytest.raises(DeployError, match="is not a canary"):
        canary_mod.remove_canary(STABLE, tracking_uri="http://mlflow", holder="run", kube=object())
    with pytest.raises(DeployError, match="pass tracking_uri and holder"):
        canary_mod.remove_canary(CANARY, tracking_uri=None, holder=None, kube=_Kube())


# -- the steps, with the cluster calls replaced ---------------------------------------------------
class _ApiException(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
        self.body = None


class _Kube:
    """Just enough of the API for remove: the Deployment and its pods vanish on delete."""

    def __init__(self, exists: bool = True) -> None:
        self.calls: list[str] = []
        self.exists = exists
        self.apps = SimpleNamespace(delete_namespaced_deployment=self._delete, read_namespaced_deployment=self._read)
        self.core = SimpleNamespace(list_namespaced_pod=self._pods, read_namespaced_service=lambda *a: object())

    def _delete(self, name, namespace, body=None):
        from kubernetes.client.rest import ApiException

        self.calls.append(f"delete {name} {body.propagation_policy}")
        if not self.exists:
            raise ApiException(status=404)
        self.exists = False

    def _read(self, name, namespace):
        from kubernetes.client.rest import ApiException

        if not self.exists:
            raise ApiException(status=404)
        return object()

    def _pods(self, namespace, label_selector=None):
        self.calls.append(f"pods {label_selector}")
        return SimpleNamespace(items=[])


@pytest.fixture
def shipped(monkeypatch):
    from detectops.monitoring import collect

    calls = []

    def ship(kube, spec, *, tracking_uri, holder):
        kube.calls.append(f"ship {spec['deployment']}")
        calls.append((spec["deployment"], tracking_uri, holder))
        return {"records": 3, "new": 3}

    monkeypatch.setattr(collect, "ship_before_removal", ship)
    # the deploy-lock fencing (a real Lease) is test_deploy_lock's business: record it only
    def fence(kube, spec, holder):
        if holder:
            kube.calls.append(f"fence {holder}")

    monkeypatch.setattr(canary_mod, "_fence", fence)
    return calls


def test_remove_ships_the_canary_log_first_then_deletes_and_waits_for_its_pods(shipped) -> None:
    kube = _Kube()
    out = canary_mod.remove_canary(CANARY.to_dict(), tracking_uri="http://mlflow", holder="dag/run-1",
                                   reason="failed analysis", kube=kube, log=lambda _: None)
    assert kube.calls[:3] == ["fence dag/run-1", "ship detector-canary", "delete detector-canary Foreground"]
    assert kube.calls[3] == "pods app.kubernetes.io/name=detector-canary"  # only the canary's own pods
    assert out["removed"] is True and out["shipped"] == {"records": 3, "new": 3} and out["reason"] == "failed analysis"
    json.dumps(out)
    again = canary_mod.remove_canary(CANARY, tracking_uri=None, holder=None, ship=False, kube=kube, log=lambda _: None)
    assert again["removed"] is False  # gone already: idempotent


@pytest.fixture
def started(monkeypatch):
    state = {"rollout_error": None, "smoke_error": None, "applied": [], "deleted": []}

    def apply(kube, obj):
        state["applied"].append((obj["kind"], obj["metadata"]["name"]))
        return SimpleNamespace(metadata=SimpleNamespace(generation=3))

    def wait(kube, name, namespace, **kw):
        if state["rollout_error"]:
            raise state["rollout_error"]
        return SimpleNamespace(status=SimpleNamespace(ready_replicas=1))

    def smoke(kube, spec, **kw):
        if state["smoke_error"]:
            raise state["smoke_error"]
        return {"targets": ["port-forward pod/detector-canary-x:8080"], "labels": ["person"], "checks": []}

    monkeypatch.setattr(canary_mod, "apply", apply)
    monkeypatch.setattr(canary_mod, "wait_for_rollout", wait)
    monkeypatch.setattr(canary_mod, "smoke_canary", smoke)
    monkeypatch.setattr(canary_mod, "_delete_and_wait",
                        lambda kube, spec, **kw: state["deleted"].append(spec.deployment))
    return state


def test_start_applies_only_the_canary_deployment_and_reports_it(started) -> None:
    out = canary_mod.start_canary(CANARY, kube=_Kube(), log=lambda _: None)
    assert started["applied"] == [("Deployment", "detector-canary")]  # the production Service is left alone
    assert out["ready_replicas"] == 1 and out["image"] == NEW and out["smoke"]["labels"] == ["person"]
    with pytest.raises(DeployError, match="not a canary"):
        canary_mod.start_canary(STABLE, kube=_Kube())


@pytest.mark.parametrize("error", [RolloutFailed("CrashLoopBackOff", "exit 1"),
                                   SmokeFailed("ExpectedLabelMissing", "found nothing")])
def test_a_canary_that_fails_to_start_is_removed_and_says_why(started, error) -> None:
    started["rollout_error" if isinstance(error, RolloutFailed) else "smoke_error"] = error
    with pytest.raises(CanaryFailed) as err:
        canary_mod.start_canary(CANARY, kube=_Kube(), log=lambda _: None)
    assert err.value.reason == error.reason and "the canary was removed" in str(err.value)
    assert started["deleted"] == ["detector-canary"]


@pytest.fixture
def promoted(monkeypatch, shipped):
    import detectops.deploy as deploy_pkg

    state = {"deployed": [], "removed": [], "error": None}

    def deploy(spec, **kw):
        state["deployed"].append(spec)
        if state["error"]:
            raise state["error"]
        return SimpleNamespace(to_dict=lambda: {"image": spec.image, "revision": 6})

    def remove(canary, **kw):
        state["removed"].append((canary.deployment, kw["reason"]))
        return {"removed": True, "reason": kw["reason"]}

    monkeypatch.setattr(deploy_pkg, "deploy", deploy)
    monkeypatch.setattr(canary_mod, "remove_canary", remove)
    return state


def test_promote_ships_stable_rolls_the_canary_image_into_stable_then_removes_the_canary(promoted, shipped) -> None:
    kube = _Kube()
    out = canary_mod.promote_canary(STABLE.to_dict(), CANARY.to_dict(), tracking_uri="http://mlflow", holder="dag/run",
                                    kube=kube, log=lambda _: None)
    assert shipped == [("detector", "http://mlflow", "dag/run")]  # stable's pods are about to be replaced
    (target,) = promoted["deployed"]
    assert (target.deployment, target.image, target.replicas, target.track) == ("detector", NEW, 2, "stable")
    assert promoted["removed"] == [("detector-canary", "promoted")]
    assert out["promoted"] is True and out["deployed"]["image"] == NEW and out["model_version"] == "8"
    json.dumps(out)


def test_a_promotion_that_rolls_back_still_removes_the_canary(promoted) -> None:
    promoted["error"] = DeploymentRolledBack("smoke failed", reason="SmokeFailed", rolled_back_to=None)
    with pytest.raises(DeploymentRolledBack):
        canary_mod.promote_canary(STABLE, CANARY, tracking_uri="http://mlflow", holder="dag/run", kube=_Kube(),
                                  log=lambda _: None)
    assert promoted["removed"] == [("detector-canary", "promotion rolled back (SmokeFailed)")]


def test_smoke_probe_turns_a_failed_smoke_test_into_the_window_s_message(monkeypatch) -> None:
    outcomes = [None, SmokeFailed("ExpectedLabelMissing", "found nothing, expected a 'person'")]

    def smoke(kube, spec, **kw):
        if outcome := outcomes.pop(0):
            raise outcome
        return {"labels": ["person"]}

    monkeypatch.setattr(canary_mod, "smoke_canary", smoke)
    probe = canary_mod.smoke_probe(CANARY, kube=_Kube())
    assert probe() is None
    assert probe() == "ExpectedLabelMissing: found nothing, expected a 'person'"


def test_analyse_canary_runs_the_analysis_while_bounded_load_goes_through_the_node_port(monkeypatch) -> None:
    from detectops.deploy import loadgen
    from detectops.monitoring import canary_analysis

    seen = {}

    class Load:
        def __init__(self, url, **kw):
            seen["url"], seen["load"] = url, kw

        def __enter__(self):
            seen["running"] = True
            return self

        def __exit__(self, *exc):
            seen["running"] = False

        def result(self):
            return SimpleNamespace(to_dict=lambda: {"sent": 10, "failed": 0})

    def run_analysis(prom, **kw):
        assert seen["running"]  # the analysis runs while the load does
        seen["analysis"] = kw
        return {"decision": "promote", "windows": []}

    monkeypatch.setattr(loadgen, "LoadGenerator", Load)
    monkeypatch.setattr(loadgen, "nodeport_url", lambda kube, ns, svc, port: "http://127.0.0.1:30080")
    monkeypatch.setattr(canary_analysis, "run_analysis", run_analysis)
    out = canary_mod.analyse_canary(CANARY, thresholds={"windows": 2, "window_s": 30, "warmup_s": 20},
                                    load={"rate_per_s": 4}, kube=_Kube(), log=lambda _: None)
    assert out == {"decision": "promote", "windows": [], "load": {"sent": 10, "failed": 0}}
    assert seen["url"] == "http://127.0.0.1:30080" and seen["load"]["path"] == "/detect"
    assert seen["load"]["max_seconds"] == 20 + 10 * 30 + 10 and seen["load"]["max_requests"] == 4 * 330 + 1
    assert (seen["analysis"]["namespace"], seen["analysis"]["service"]) == ("prod", "detector")
    assert seen["analysis"]["thresholds"].windows == 2 and callable(seen["analysis"]["probe"])
