"""promote / reject / rollback: who points where afterwards, and that retries change nothing.

An in-memory registry stands in for MlflowClient (same methods, same MlflowException codes);
tests/integration/test_registry_mlflow.py runs the same moves against a real MLflow server.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from detectops.errors import PromotionError
from detectops.registry import aliases
from detectops.registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, promote, reject, rollback

NAME = "detector"


class FakeRegistry:
    """The MlflowClient calls aliases.py makes, on one registered model with versions 1..n."""

    def __init__(self, versions: int) -> None:
        self.tags = {str(v): {"image": f"r/x@sha256:{v}"} for v in range(1, versions + 1)}
        self.aliases: dict[str, str] = {}

    @staticmethod
    def _missing(what: str):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        return MlflowException(f"{what} not found", error_code=RESOURCE_DOES_NOT_EXIST)

    def get_model_version(self, name, version):
        if str(version) not in self.tags:
            raise self._missing(f"version {version}")
        return SimpleNamespace(name=name, version=str(version), tags=dict(self.tags[str(version)]))

    def get_model_version_by_alias(self, name, alias):
        if alias not in self.aliases:
            raise self._missing(f"alias {alias}")
        return self.get_model_version(name, self.aliases[alias])

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[alias] = str(version)

    def delete_registered_model_alias(self, name, alias):
        del self.aliases[alias]

    def set_model_version_tag(self, name, version, key, value):
        self.tags[str(version)][key] = value


@pytest.fixture
def registry(monkeypatch) -> FakeRegistry:
    fake = FakeRegistry(versions=4)
    monkeypatch.setattr(aliases, "connect", lambda tracking_uri=None: fake)
    return fake


def test_first_promotion_sets_champion_and_no_previous(registry) -> None:
    move = promote(NAME, 1)
    assert (move.version, move.replaced, move.previous, move.changed) == ("1", None, None, True)
    assert registry.aliases == {CHAMPION: "1"}
    assert move.image == "r/x@sha256:1"


def test_promotion_keeps_the_old_champion_as_previous_and_is_idempotent(registry) -> None:
    promote(NAME, 1)
    move = promote(NAME, 2)
    assert registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}
    assert (move.replaced, move.previous) == ("1", "1")
    assert registry.tags["2"]["champion.promoted_from"] == "1"
    again = promote(NAME, 2)
    assert not again.changed and registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}


def test_other_aliases_for_staging(registry) -> None:
    promote(NAME, 3, alias="staging", previous_alias="staging-previous")
    promote(NAME, 4, alias="staging", previous_alias="staging-previous")
    assert registry.aliases == {"staging": "4", "staging-previous": "3"}


def test_promoting_a_missing_version_says_so(registry) -> None:
    with pytest.raises(PromotionError, match="has no version 9"):
        promote(NAME, 9)
    assert registry.aliases == {}


def test_reject_records_why_and_leaves_champion_alone(registry) -> None:
    promote(NAME, 1)
    registry.aliases[CHALLENGER] = "2"
    reject(NAME, 2, "mAP 0.31 < champion 0.40 + margin 0.01", stage="gate")
    assert registry.aliases == {CHAMPION: "1"}  # challenger dropped, champion untouched
    tags = registry.tags["2"]
    assert tags["rejected"] == "true" and tags["rejected_stage"] == "gate"
    assert tags["rejected_reason"].startswith("mAP 0.31") and tags["rejected_at"]
    reject(NAME, 1, "x" * 10_000, stage="canary")  # rejecting the champion does not move it
    assert registry.aliases[CHAMPION] == "1" and len(registry.tags["1"]["rejected_reason"]) <= 4000


def test_rollback_returns_to_previous_and_never_back_to_the_bad_version(registry) -> None:
    promote(NAME, 1)
    promote(NAME, 2)
    promote(NAME, 3)
    move = rollback(NAME, from_version=3, reason="error rate 12%")
    assert (move.version, move.replaced, move.changed) == ("2", "3", True)
    assert registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}  # previous: the champion before 2
    assert registry.tags["3"]["rejected_stage"] == "rollback" and registry.tags["3"]["champion.rolled_back_to"] == "2"
    assert move.image == "r/x@sha256:2"  # what to deploy

    retried = rollback(NAME, from_version=3)
    assert not retried.changed and registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}

    rollback(NAME, from_version=2)  # a second rollback goes further back
    assert registry.aliases == {CHAMPION: "1"}
    with pytest.raises(PromotionError, match="no 'previous' version"):
        rollback(NAME)


def test_rollback_refuses_when_the_champion_moved_meanwhile(registry) -> None:
    promote(NAME, 1)
    promote(NAME, 2)
    with pytest.raises(PromotionError, match="is version 2, not 1"):
        rollback(NAME, from_version=1)
    assert registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}


def test_a_rollback_interrupted_before_previous_moved_is_completed_by_the_retry(registry) -> None:
    promote(NAME, 1)
    promote(NAME, 2)
    promote(NAME, 3)
    # The crash: tags written and champion moved, previous not yet updated.
    registry.tags["3"].update({"rejected": "true", "champion.rolled_back_to": "2"})
    registry.aliases[CHAMPION] = "2"
    assert registry.aliases[PREVIOUS] == "2"
    rollback(NAME, from_version=3)
    assert registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}


def test_cli_promote_and_rollback(registry, capsys) -> None:
    import json

    from detectops.cli import main

    assert main(["promote", NAME, "1", "--mlflow", "http://mlflow"]) == 0
    assert main(["promote", NAME, "2", "--mlflow", "http://mlflow"]) == 0
    capsys.readouterr()
    assert main(["rollback", NAME, "--reason", "bad latency", "--mlflow", "http://mlflow"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["version"] == "1" and "deploy its image: r/x@sha256:1" in out.err
    assert registry.aliases == {CHAMPION: "1"} and registry.tags["2"]["rejected_reason"] == "bad latency"
    assert main(["rollback", NAME, "--mlflow", "http://mlflow"]) == 2  # nothing left: says so, exit 2
    assert "no 'previous' version" in capsys.readouterr().err


def test_rollback_target_names_the_image_to_redeploy_before_anything_moves(registry) -> None:
    from detectops.registry import rollback_target

    promote(NAME, 1)
    with pytest.raises(PromotionError, match="no 'previous' version"):
        rollback_target(NAME)
    promote(NAME, 2)
    assert rollback_target(NAME) == {"name": NAME, "from_version": "2", "version": "1", "image": "r/x@sha256:1"}
    assert registry.aliases == {CHAMPION: "2", PREVIOUS: "1"}  # nothing moved
    del registry.tags["1"]["image"]
    with pytest.raises(PromotionError, match="no serving image recorded"):
        rollback_target(NAME)


@pytest.mark.platform
def test_rollback_dag_deploys_the_previous_version_before_moving_the_alias() -> None:
    """dags/detectops_rollback.py: Params for the UI/REST API, the shared deploy group, alias moved last."""
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "detectops_rollback.py"
    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["detectops_rollback"]
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")
    assert {"model_name", "namespace", "reason"} <= set(dag.params)
    move = dag.get_task("move_alias")
    assert move.upstream_task_ids == {"plan", "deploy.smoke_test"}
    assert "deploy.promote" not in dag.task_ids  # the group moves no alias: move_alias does, after the smoke test
    assert {"deploy.deploy", "deploy.reject"} <= set(dag.task_ids)
