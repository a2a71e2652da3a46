"""The outcome of a level-2 run, in its note (Markdown, in the UI and the REST API) and in MLflow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectops.errors import DetectOpsError

PROMOTED, ROLLED_BACK = "promoted", "rolled back"
#: The tasks whose failure names the outcome of a run that did not release, in pipeline order.
STAGES = (("checkout", "checkout failed"), ("build", "build failed"), ("tests", "tests failed"),
          ("check_tests", "tests failed"), ("staging", "staging failed"), ("staged_version", "staging failed"),
          ("canary_plan", "canary failed"), ("start_canary", "canary failed"), ("analyse", "canary failed"),
          ("promote", "promotion failed"))


def outcome_of(states: Mapping[str, str], results: Mapping[str, Any],
               stages: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(outcome, reason) from the task states and XComs of a finished run."""
    if results.get("promote"):
        return PROMOTED, "the canary passed" + (" and was approved" if results.get("approval") else "")
    if results.get("roll_back"):
        return ROLLED_BACK, results["roll_back"]["reason"]
    for task_id, outcome in stages:
        if states.get(task_id) == "failed":  # the first failed stage, not the ones it held up
            return outcome, f"task {task_id} failed: see its log"
    return "failed", "a step failed: see the failed task's log"


def _short(image: str | None) -> str:
    """``repo@sha256:0123456789ab`` (12 hex of the digest: enough to tell builds apart; the note is short)."""
    if not image:
        return "not built"
    repository, _, digest = image.partition("@")
    return f"`{repository.rsplit('/', 1)[-1]}@{digest[:19]}`" if digest else f"`{image}`"


def run_note(outcome: str, reason: str, params: Mapping[str, Any], results: Mapping[str, Any], *,
             release_url: str | None) -> str:
    """Markdown for the run's note (Airflow keeps 1,000 characters: digests are shortened, MLflow has the rest)."""
    checked, images = results.get("checkout") or {}, results.get("build") or {}
    staged, plan = results.get("staged_version") or {}, results.get("canary_plan") or {}
    decision, promoted = results.get("analyse") or {}, results.get("promote") or {}
    sha = checked.get("sha") or params.get("commit_sha", "")
    lines = [f"**commit {sha[:12]}: {outcome}** ({reason[:200]})",
             f"- {checked.get('subject', '')[:80]} ({params.get('ref') or 'no ref'})",
             f"- images {_short(images.get('pipeline_image'))}, {_short(images.get('test_image'))}"]
    if results.get("check_tests"):
        lines.append(f"- tests: {results['check_tests'].get('summary', '')[:80]}")
    if staged:
        lines.append(f"- staging run `{staged.get('staging_run')}`: v{staged['model_version']} {_short(staged['image'])}")
    if plan:
        lines.append(f"- canary v{plan['model_version']} beside stable v{plan['stable']['model_version']} "
                     f"({plan['canary']['replicas']}:{plan['stable']['replicas']} replicas)")
    if decision:
        load = decision.get("load") or {}
        lines.append(f"- analysis **{decision.get('decision')}** in {decision.get('seconds')} s: "
                     f"{decision.get('passed')} passed, {decision.get('failed')} failed, {decision.get('no_verdict')} "
                     f"no verdict; load {load.get('sent', '?')} requests, {load.get('failed', '?')} failed")
    approval = results.get("approval")
    if approval:
        lines.append(f"- approval: {approval.get('chosen_options')} by "
                     f"{(approval.get('responded_by_user') or {}).get('name', '?')}")
    if promoted:
        switched = promoted.get("pipeline_image") or {}
        lines.append(f"- champion v{promoted['previous_version']} → v{promoted['model_version']}; level 1's pipeline "
                     f"image {_short(switched.get('current'))}")
    if results.get("roll_back"):
        lines.append("- canary removed; champion and pipeline image unchanged")
    if release_url:
        lines.append(f"- [MLflow release run]({release_url})")
    return "\n".join(lines)


def report(dag_id: str, run_id: str, params: Mapping[str, Any], *, states: Mapping[str, str],
           results: Mapping[str, Any], tracking_uri: str, stages: Sequence[tuple[str, str]] = STAGES) -> dict[str, Any]:
    from detectops.airflow_api import from_connection
    from detectops.cicd import release

    outcome, reason = outcome_of(states, results, stages)
    release_url = None
    try:
        experiment, run = release.release_run(f"{dag_id}/{run_id}", tracking_uri=tracking_uri, checked_out=results.get("checkout"),
                                  images=results.get("build"))
        release.record(run, tracking_uri=tracking_uri, outcome=outcome, reason=reason, decision=results.get("analyse"),
                       extra={"dag_run": f"{dag_id}/{run_id}", "states": dict(states),
                              **{k: v for k, v in results.items() if v}})
        release_url = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{run}"
    except Exception as exc:  # the record is not worth failing a release for; the log says what went wrong
        print(f"could not record the release in MLflow: {exc}")
    note = run_note(outcome, reason, params, results, release_url=release_url)
    print(note)
    try:
        from_connection().set_run_note(dag_id, run_id, note)
    except Exception as exc:
        print(f"could not set the run's note through the REST API: {exc}")
    if outcome != PROMOTED:
        raise DetectOpsError(f"commit {str(params.get('commit_sha'))[:12]} was not released: {outcome} ({reason})")
    return {"outcome": outcome, "reason": reason, "note": note, "release_url": release_url}
