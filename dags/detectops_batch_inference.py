"""
### DetectOps batch inference — score a batch of images with a registered model version

**Triggers:** the Asset `detectops_unlabelled_batch` (`POST /api/v2/assets/events` with
`{"extra": {"location": ..., "model": ...}}`; several queued events are scored in one run, one
pod each), or **Trigger** with the form below (location, model, alias or version, namespace).

1. **resolve** — the model version (`alias`, default `champion`, or `version`) and the serving
   image recorded on it, pinned by digest; the input as a `runs:/<id>/batch` URI of MLflow's
   artifact store (a directory under the landing area is published there first, once per
   content); the namespace is prepared.
2. **score** — a `KubernetesPodOperator` pod of that very detector image runs
   `detectops predict-batch`: the service's own decoding and answers, so its detections are the
   service's. Unreadable images are reported per file, the rest is scored. COCO results, a
   summary (detections per class at `min_score`, a score histogram) and a contact sheet go to
   MLflow (experiment `detectops-batch-inference`), one run per model version, input content and
   threshold: a retried pod finds its run and scores nothing twice.
3. **publish** — emits the Asset `detectops_batch_scored` with the runs and counts in `extra`.
4. **check_rejected** — a bad event (no such version, a location outside the landing area) or
   a pod that failed deterministically (an unusable model or input) does not stop the other
   batches of the run: they are scored and published, and then this task fails the run naming
   each rejected batch and why (the failure notification carries it). Transient faults are
   retried; a deterministic failure in a pod is reported by the pod, not retried.

Connections: `mlflow_default`, `kubernetes_default`.
"""

from __future__ import annotations

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: F401  (pre-imported by the dag-processor)
from airflow.sdk import Param, dag

from detectops import assets
from detectops.notify import RunFailedWebhook
from detectops.orchestration import dag_defaults

UNLABELLED_BATCH = assets.unlabelled_batch()


@dag(
    dag_id="detectops_batch_inference",
    schedule=[UNLABELLED_BATCH],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["detectops", "batch-inference"],
    default_args=dag_defaults(),
    on_failure_callback=[RunFailedWebhook()],  # a failed run notifies the alert webhook
    doc_md=__doc__,
    params={
        "location": Param("", type="string", title="Images to score",
                          description="A directory under the landing area, or runs:/<run id>/batch of a stored batch. "
                                      "Asset events name it in extra.location."),
        "model_name": Param("detector", type="string", title="Registered model name"),
        "alias": Param("champion", type="string", title="Alias of the version to score with"),
        "version": Param(None, type=["null", "string"], title="Version (overrides the alias)"),
        "namespace": Param("detectops", type="string", title="Kubernetes namespace of the scoring pod"),
        "min_score": Param(0.3, type="number", minimum=0, maximum=1,
                           title="Detections counted from this score (the service's DETECTOPS_MIN_SCORE)"),
    },
)
def detectops_batch_inference():
    from detectops.batch import tasks as t

    pods = t.resolve()
    scored = t.score_pods(pods)
    t.check_rejected(t.publish(pods, scored.output, pods["rejected"]))


detectops_batch_inference()
