"""The model's deploy lock as Airflow tasks: a reschedule-mode sensor that takes it, a task that frees it.

Every change to one registered model (a rollout, a canary, an alias move) happens while this DAG
run holds the model's Kubernetes Lease (``detectops.deploy.lock``), whichever DAG made it. The
holder is the DAG run (``<dag_id>/<run_id>``): its tasks share the Lease, another run waits.
Use ``release`` as the teardown of ``acquire``, so the Lease is freed whatever happened:

    locked = acquire_model_lock()(spec)
    ...
    released = release_model_lock()(spec)
    released.as_teardown(setups=locked)

``spec`` is any dict with ``model_name`` (a ``DeploySpec`` dict). Parse-time light.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from detectops.orchestration import KUBERNETES_CONN_ID, fail_fast_unless_transient

#: How long a run waits for another run's change to the same model before it gives up.
DEFAULT_LOCK_WAIT_S = 3600
#: Seconds between two attempts to take the model's Lease (the sensor frees its worker slot between them).
LOCK_POKE_S = 15


def lock_holder(context: dict[str, Any]) -> str:
    """Who holds the model's Lease: this DAG run (its tasks share it; another run waits)."""
    return f"{context['dag'].dag_id}/{context['run_id']}"


def acquire_model_lock(*, task_id: str = "acquire_lock", kubernetes_conn_id: str = KUBERNETES_CONN_ID,
                       lock_wait_s: float = DEFAULT_LOCK_WAIT_S):
    """A sensor task taking the Lease of ``spec['model_name']`` for this DAG run (waits up to ``lock_wait_s``)."""

    @task.sensor(task_id=task_id, poke_interval=LOCK_POKE_S, timeout=lock_wait_s, mode="reschedule")
    @fail_fast_unless_transient
    def acquire_lock(spec: dict, **context) -> bool:
        from detectops.deploy.kube import connect
        from detectops.deploy.lock import try_acquire
        from detectops.orchestration import kube_config_path

        holder = lock_holder(context)
        state = try_acquire(connect(kube_config_path(kubernetes_conn_id)), spec["model_name"], holder)
        if state.holder != holder:
            print(f"model {spec['model_name']!r} is being changed by {state.holder} "
                  f"(Lease {state.lease}, until {state.expires_at}); waiting")
            return False
        print(f"holding the deploy lock of {spec['model_name']!r} (Lease {state.lease})")
        return True

    return acquire_lock


def release_model_lock(*, task_id: str = "release_lock", kubernetes_conn_id: str = KUBERNETES_CONN_ID):
    """A task releasing this DAG run's Lease of ``spec['model_name']`` (only its own)."""

    @task(task_id=task_id)
    def release_lock(spec: dict, **context) -> bool:
        from detectops.deploy.kube import connect
        from detectops.deploy.lock import release
        from detectops.orchestration import kube_config_path

        return release(connect(kube_config_path(kubernetes_conn_id)), spec["model_name"], lock_holder(context))

    return release_lock
