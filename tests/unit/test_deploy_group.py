"""deploy_group: the one deployment path's wiring, and the release decision behind its last tasks.

The wiring is checked on a DAG built in-process (no Airflow services): task ids, order, trigger
rules, setup/teardown, the deployer pod's rendered command. tests/e2e/test_level0_deploy.py runs
the same group for real.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import dag, task

from detectops.dagkit import deploy_group
from detectops.deploy import release
from detectops.deploy.rollout import Revision
from detectops.deploy.spec import DeploySpec

IMAGE = "127.0.0.1:5000/detectops/detector@sha256:" + "ef" * 32
SPEC = DeploySpec(model_name="shapes", model_version="4", image=IMAGE, namespace="prod", expect_label="square")


def _build(**kwargs):
    @dag(dag_id="uses_deploy_group", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
    def uses_deploy_group():
        @task
        def spec() -> dict:
            return SPEC.to_dict()

        deploy_group(spec(), **kwargs)

    return uses_deploy_group()


def _ids(tasks) -> set[str]:
    return {t.task_id for t in tasks}


def test_the_group_deploys_after_the_lock_and_promotes_only_after_the_smoke_test() -> None:
    d = _build()
    t = {task.task_id: task for task in d.tasks}
    assert set(t) == {"spec", "deploy.prepare", "deploy.acquire_lock", "deploy.ship_logs", "deploy.deploy",
                      "deploy.smoke_test", "deploy.promote", "deploy.reject", "deploy.release_lock"}
    assert _ids(t["deploy.acquire_lock"].upstream_list) == {"deploy.prepare"}
    # the pods to be replaced ship their prediction log first, once the lock is held
    assert _ids(t["deploy.ship_logs"].upstream_list) == {"deploy.prepare", "deploy.acquire_lock"}
    assert _ids(t["deploy.deploy"].upstream_list) == {"deploy.ship_logs"}
    assert "deploy.deploy" in _ids(t["deploy.smoke_test"].upstream_list)
    assert "deploy.smoke_test" in _ids(t["deploy.promote"].upstream_list)
    # the lock is a setup; its release a teardown that runs whatever happened, after promote/reject
    assert t["deploy.acquire_lock"].is_setup and t["deploy.release_lock"].is_teardown
    assert t["deploy.acquire_lock"].mode == "reschedule"  # waits without a worker slot
    assert {"deploy.acquire_lock", "deploy.promote", "deploy.reject"} <= _ids(t["deploy.release_lock"].upstream_list)
    # reject: on a failed deploy or smoke test, never after a promotion
    assert t["deploy.reject"].trigger_rule == "one_failed"
    assert _ids(t["deploy.reject"].upstream_list) == {"deploy.deploy", "deploy.smoke_test"}
    # the run fails unless the version was promoted: promote and reject are its leaves (teardowns aside)
    assert _ids(t["deploy.promote"].downstream_list) == {"deploy.release_lock"}


def test_the_deployer_pod_runs_the_spec_in_its_own_image_without_host_network() -> None:
    d = _build()
    pod = d.get_task("deploy.deploy")
    assert pod.service_account_name == "detectops-deployer"
    assert not pod.hostnetwork and not pod.env_vars
    ti = SimpleNamespace(xcom_pull=lambda task_ids, key="return_value": SPEC.to_dict() if task_ids == "deploy.prepare" else None)
    context = {"ti": ti}
    args = pod.render_template(pod.arguments, context)
    assert args[:2] == ["deploy", "--spec"]
    assert DeploySpec.from_json(args[2]) == SPEC
    assert "--record-rollback" in args and args[args.index("--xcom-file") + 1] == "/airflow/xcom/return.json"
    assert pod.render_template(pod.image, context) == IMAGE
    assert pod.render_template(pod.namespace, context) == "prod"


def test_without_a_promote_alias_the_group_only_deploys_and_tests() -> None:
    d = _build(promote_alias=None, group_id="canary")
    assert "canary.promote" not in _ids(d.tasks)
    assert "canary.smoke_test" in _ids(d.get_task("canary.release_lock").upstream_list)


# -- the release decision ---------------------------------------------------------------------------
def test_a_rollback_is_a_verdict_a_success_is_not() -> None:
    assert release.verdict_of({"rolled_back": False, "image": IMAGE}) is None
    assert release.verdict_of(None) is None
    verdict = release.verdict_of({"rolled_back": True, "reason": "CrashLoopBackOff", "message": "exit 1"})
    assert verdict == "deploy rolled back (CrashLoopBackOff): exit 1"


@pytest.fixture
def recorded(monkeypatch):
    import detectops.deploy as deploy_mod
    from detectops import registry
    from detectops.deploy import kube as kube_mod

    calls: dict = {"reject": [], "promote": [], "undo": []}
    monkeypatch.setattr(kube_mod, "connect", lambda kubeconfig=None: "kube")
    monkeypatch.setattr(registry, "reject", lambda *a, **kw: calls["reject"].append((a, kw)), raising=False)
    monkeypatch.setattr(registry, "promote", lambda *a, **kw: calls["promote"].append((a, kw)) or
                        SimpleNamespace(to_dict=lambda: {"alias": kw["alias"], "version": a[1]}), raising=False)
    monkeypatch.setattr(deploy_mod, "undo", lambda spec, rev, kube, log: calls["undo"].append(rev)
                        or Revision(rev, "old-image", "rs"))
    return calls


def test_reject_after_a_failed_outside_smoke_test_puts_the_old_revision_back(recorded) -> None:
    out = release.reject_version(SPEC.to_dict(), "smoke test through the Service failed: no square",
                                 deployed={"rolled_back": False, "previous_revision": 3}, stage="deploy",
                                 tracking_uri="http://mlflow", log=lambda _: None)
    assert recorded["undo"] == [3] and out["serving_image"] == "old-image"
    ((args, kw),) = recorded["reject"]
    assert args == ("shapes", "4", "smoke test through the Service failed: no square")
    assert kw == {"stage": "deploy", "tracking_uri": "http://mlflow"}
    assert recorded["promote"] == []  # the alias is left alone


def test_reject_after_the_deployer_rolled_back_does_not_roll_back_again(recorded) -> None:
    out = release.reject_version(SPEC, "deploy rolled back", stage="deploy", tracking_uri=None, log=lambda _: None,
                                 deployed={"rolled_back": True, "serving_image": "old-image"})
    assert recorded["undo"] == [] and out["serving_image"] == "old-image" and len(recorded["reject"]) == 1


def test_promote_moves_the_alias_and_is_xcom_safe(recorded) -> None:
    out = release.promote_version(SPEC, alias="champion", previous_alias="previous", tracking_uri="http://mlflow")
    ((args, kw),) = recorded["promote"]
    assert args == ("shapes", "4") and kw == {"alias": "champion", "previous_alias": "previous",
                                              "tracking_uri": "http://mlflow"}
    assert json.loads(json.dumps(out))["registry"] == {"alias": "champion", "version": "4"}


def test_promote_refuses_when_the_lock_changed_hands(recorded, monkeypatch) -> None:
    from detectops.deploy import lock
    from detectops.errors import DeployError

    def lost(kube, model_name, holder, **kw):
        raise lock.LockLost(f"{holder} no longer holds the deploy lock of model {model_name!r}")

    monkeypatch.setattr(lock, "renew", lost)
    with pytest.raises(DeployError, match="no longer holds the deploy lock"):
        release.promote_version(SPEC, alias="champion", tracking_uri=None, holder="level0/run1")
    assert recorded["promote"] == []


class _TI:
    def __init__(self, xcoms: dict) -> None:
        self.xcoms, self.pushed = xcoms, {}

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_a_rolled_back_deploy_fails_the_smoke_test_at_once_with_its_verdict() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    smoke = _build().get_task("deploy.smoke_test")
    ti = _TI({})
    with pytest.raises(AirflowFailException, match="CrashLoopBackOff"):  # not retried
        smoke.python_callable(SPEC.to_dict(), {"rolled_back": True, "reason": "CrashLoopBackOff", "message": "m"},
                              ti=ti)
    assert ti.pushed["verdict"] == "deploy rolled back (CrashLoopBackOff): m"


def test_reject_blames_the_version_only_when_there_is_a_verdict(recorded, monkeypatch) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    import detectops.orchestration as orchestration

    monkeypatch.setattr(orchestration, "kube_config_path", lambda conn_id=None: None)
    monkeypatch.setattr(orchestration, "mlflow_tracking_uri", lambda conn_id=None: "http://mlflow")
    reject = _build().get_task("deploy.reject")
    context = {"dag": SimpleNamespace(dag_id="d"), "run_id": "r1"}
    monkeypatch.setattr(release, "_fence", lambda kube, spec, holder: None)
    with pytest.raises(AirflowSkipException, match="no verdict on the version"):
        reject.python_callable(ti=_TI({("deploy.prepare", "return_value"): SPEC.to_dict()}), **context)
    assert recorded["reject"] == []
    ti = _TI({("deploy.prepare", "return_value"): SPEC.to_dict(),
              ("deploy.smoke_test", "verdict"): "deploy rolled back (CrashLoopBackOff): m",
              ("deploy.deploy", "return_value"): {"rolled_back": True, "serving_image": "old-image"}})
    out = reject.python_callable(ti=ti, **context)
    assert out["reason"] == "deploy rolled back (CrashLoopBackOff): m" and len(recorded["reject"]) == 1


def test_acquire_lock_waits_while_another_run_changes_the_same_model(monkeypatch) -> None:
    from detectops.deploy import kube as kube_mod
    from detectops.deploy import lock

    import detectops.orchestration as orchestration

    leases = SimpleNamespace(coordination=None)
    monkeypatch.setattr(orchestration, "kube_config_path", lambda conn_id=None: None)
    monkeypatch.setattr(kube_mod, "connect", lambda kubeconfig=None: leases)
    held: dict = {}

    def try_acquire(kube, model_name, holder, **kw):
        held.setdefault(model_name, holder)
        return lock.LockStatus(model_name, lock.lease_name(model_name), held[model_name], None)

    monkeypatch.setattr(lock, "try_acquire", try_acquire)
    sensor = _build().get_task("deploy.acquire_lock")
    first = {"dag": SimpleNamespace(dag_id="detectops_level0_manual"), "run_id": "manual__1"}
    second = {"dag": SimpleNamespace(dag_id="detectops_level1_training"), "run_id": "asset__2"}
    assert sensor.python_callable(SPEC.to_dict(), **first) is True
    assert sensor.python_callable(SPEC.to_dict(), **second) is False  # pokes again later
    assert held == {"shapes": "detectops_level0_manual/manual__1"}
