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


def _image(images: Mapping[str, Any] | None, key: str) -> str:
    return f"`{images[key]}`" if images and images.get(key) else "not built"


def run_note(outcome: str, reason: str, params: Mapping[str, Any], results: Mapping[str, Any], *,
             release_url: str | None) -> str:
    checked, images = results.get("checkout") or {}, results.get("build") or {}
    staged, plan = results.get("staged_version") or {}, results.get("canary_plan") or {}
    decision, promoted = results.get("analyse") or {}, results.get("promote") or {}
    sha = checked.get("sha") or params.get("commit_sha", "")
    lines = [f"**commit {sha[:12]}: {outcome}** ({reason})",
             f"- commit `{sha}` {checked.get('subject', '')} from `{params.get('repo')}` {params.get('ref') or ''}".rstrip(),
             f"- pipeline image {_image(images, 'pipeline_image')}; test image {_image(images, 'test_image')}"]
    if staged:
        lines.append(f"- staging (level-1 run `{staged.get('staging_run')}` in {params.get('staging_namespace')}): "
                     f"{staged['model_name']} v{staged['model_version']}, image `{staged['image']}`, training run "
                     f"{staged.get('training_run_id')}, evaluation run {staged.get('evaluation_run_id')}")
    if plan:
        lines.append(f"- canary v{plan['model_version']} beside stable v{plan['stable']['model_version']} "
                     f"({plan['canary']['replicas']} : {plan['stable']['replicas']} replicas)")
    if decision:
        load = decision.get("load") or {}
        lines.append(f"- analysis: **{decision.get('decision')}** after {decision.get('seconds')} s: "
                     f"{decision.get('reason')}; {decision.get('passed')} passed, {decision.get('failed')} failed, "
                     f"{decision.get('no_verdict')} without verdict; load {load.get('sent', '?')} requests, "
                     f"{load.get('failed', '?')} failed")
    approval = results.get("approval")
    if approval:
        lines.append(f"- approval: {approval.get('chosen_options')} by "
                     f"{(approval.get('responded_by_user') or {}).get('name', '?')}")
    if promoted:
        switched = promoted.get("pipeline_image") or {}
        lines.append(f"- champion is now v{promoted['model_version']} (was v{promoted['previous_version']}); "
                     f"level 1's pipeline image: `{switched.get('current')}` (previous `{switched.get('previous')}`)")
    if results.get("roll_back"):
        lines.append("- rolled back: the canary was removed; champion and the pipeline image are unchanged")
    if release_url:
        lines.append(f"- MLflow: {release_url}")
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
