"""
### DetectOps level 1 — continuous training

MLOps maturity level 1 (Google Cloud's definition): the pipeline retrains by itself when new
labelled data lands (or drift is detected, or on a schedule), checks the candidate against the
champion automatically, and promotes it only once it serves.

**Triggers** (one `AssetOrTimeSchedule`): the cron schedule (`DETECTOPS_LEVEL1_CRON`, daily by
default); the Asset `detectops_batch_landed` (a file drop into the landing area, watched by an
`AssetWatcher`; `POST /api/v2/assets/events`; `detectops land DIR`); the Asset
`detectops_drift_detected` (the monitoring DAG); and **Trigger** with the form below. Queued
events become one run that ingests every batch in order; an event's `extra.model` names the
model it concerns (events for other models are ignored).

1. **collect_batches** — the batches of the events and of the landing area, each once (content hash).
2. **validate_batches** — GX (the provider's operator, training purpose) per batch. A batch with
   schema problems is quarantined with its report; a class outside the label map is rejected.
   Value skew against the current dataset version (L∞ for the class mix, Jensen–Shannon for
   brightness, image and box sizes) is always reported, and stops the run above `max_skew`.
3. **version_dataset** — a new immutable version named by its content hash, every image in a
   split fixed by its own hash, published to MLflow's artifact store. Unchanged data: the run
   says so in its note and stops.
4. **train** — a `KubernetesPodOperator` pod of the pipeline image trains the detector
   (`detectops train`), warm-started from the champion when it can be, a checkpoint per epoch
   in MLflow (a retried pod resumes).
5. **evaluate** — candidate and champion on the same test split, with slices (batch, class,
   brightness), logged to MLflow.
6. **register** (always, with lineage) → **build_image** → **infra_validate** (a throwaway pod
   of that very image answers a request) → **gate** (mAP margin, class and slice drops,
   latency, contract, infra). Passed: alias `challenger`. Failed: tagged with the reasons.
7. **deploy** (the shared deploy group: rollout, smoke test through the Service) and only then
   **promote**: `champion` moves, the old one keeps `previous`.
8. **report** — the run's note: promoted, not promoted (why, with the numbers), or nothing to retrain.

Aliases and namespace are Params, so level 2 runs this DAG in staging (`detectops-staging`): the
gate compares with `champion_alias`, the deploy moves `promote_alias` (`staging`), the pipeline
image is the commit's, and `ingest_new_batches=false` retrains on the current dataset version.
Connections: `mlflow_default`, `detectops_registry`, `kubernetes_default`, `detectops_airflow_api`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: F401  (pre-imported by the dag-processor)
from airflow.sdk import Param, XComArg, dag
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from detectops import assets
from detectops.continuous.params import level1_params
from detectops.dagkit import deploy_group, training_pod
from detectops.notify import RunFailedWebhook
from detectops.orchestration import dag_defaults
from detectops.settings import landing_dir

BATCH_LANDED = assets.batch_landed(ready_marker=str(landing_dir() / "READY"))
DRIFT_DETECTED = assets.drift_detected()
CRON = os.environ.get("DETECTOPS_LEVEL1_CRON", "0 3 * * *")


@dag(
    dag_id="detectops_level1_training",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(CRON, timezone="UTC"),
        assets=(BATCH_LANDED | DRIFT_DETECTED),
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["detectops", "level-1", "continuous-training"],
    default_args=dag_defaults(),
    on_failure_callback=[RunFailedWebhook()],  # a failed run notifies the alert webhook
    doc_md=__doc__,
    params=level1_params(Param),
)
def detectops_level1_training():
    from detectops.continuous import tasks as t

    collected = t.collect_batches()
    validated = t.validate_batches(collected)
    version = t.version_dataset(validated)
    go = t.retrain_needed(version)
    plan = t.training_plan(version)
    go >> plan

    # The pod runs the pipeline image; everything it needs is in its arguments (the dataset
    # version's URI, MLflow's address as pods see it), and it writes its result as XCom.
    train = training_pod(plan_task_id="training_plan", task_id="train")
    plan >> train

    evaluation = t.evaluate(train.output, version)
    registered = t.register(train.output, version, evaluation, plan, validated)
    image = t.build_image(registered, evaluation, plan)
    infra = t.infra_validate(image, registered)
    verdict = t.gate(evaluation, infra, registered)
    spec = t.deploy_spec(verdict, image, registered)
    # Staging runs (level 2) move their own alias (`staging`); production runs move the champion.
    deployed = deploy_group(spec, group_id="deploy",
                            promote_alias="{{ params.promote_alias or params.champion_alias }}",
                            previous_alias="{{ params.previous_alias }}")
    promoted = XComArg(deployed.children["deploy.promote"])
    t.report(collected, validated, version, evaluation, verdict, promoted)


detectops_level1_training()
