"""Which failures are retried: transient faults are, deterministic ones fail at once.

The exceptions are the real classes the libraries raise (requests, urllib3, urllib, MLflow,
the kubernetes client, docker, the GX provider, Airflow), built the way those libraries build
them, so a library that changes its exceptions breaks these tests rather than the retries.
"""

from __future__ import annotations

import socket
import urllib.error

import pytest

from detectops.errors import (
    BuildError,
    ContractError,
    DataValidationError,
    DeployError,
    GateRejected,
    ImageTagConflict,
    ModelSourceError,
    PromotionError,
    ServiceUnavailableError,
    http_status,
    is_transient,
)


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised while handling ``inner`` (sets ``__context__`` as a real ``except`` does)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer
    except BaseException as exc:
        return exc


def _requests_http_error(status: int):
    import requests

    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} error", response=response)


def _api_exception(status: int, kind: str = "pods"):
    import json

    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps({"kind": "Status", "code": status, "details": {"name": "p", "kind": kind}})
    return exc


# -- transient: retried with backoff -----------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: ConnectionRefusedError(111, "Connection refused"),  # a service starting up
    lambda: ConnectionResetError(104, "reset by peer"),
    lambda: TimeoutError("timed out"),
    lambda: socket.timeout("timed out"),
    lambda: urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
    lambda: urllib.error.HTTPError("http://mlflow/health", 503, "Service Unavailable", {}, None),
    lambda: ServiceUnavailableError("MLflow tracking server at http://x is unreachable"),
], ids=["refused", "reset", "timeout", "socket-timeout", "urlerror-refused", "urllib-503", "service-unavailable"])
def test_network_faults_and_unavailable_services_are_transient(make) -> None:
    assert is_transient(make())


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_and_throttling_are_transient(status: int) -> None:
    assert is_transient(_requests_http_error(status))


def test_requests_and_urllib3_connection_failures_are_transient() -> None:
    import requests
    import urllib3.exceptions

    assert is_transient(requests.ConnectionError("Max retries exceeded"))
    assert is_transient(requests.Timeout("read timed out"))
    assert is_transient(urllib3.exceptions.ProtocolError("Connection aborted."))
    assert is_transient(urllib3.exceptions.MaxRetryError(None, "/api/v1/pods", "refused"))


def test_mlflow_unreachable_or_starting_up_is_transient() -> None:
    import requests
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

    # What mlflow.utils.rest_utils raises when the server is down: no `from`, only the context.
    down = _chained(MlflowException("API request to http://x/api failed with exception boom"),
                    requests.ConnectionError("Connection refused"))
    assert is_transient(down)
    assert is_transient(MlflowException("503 from the server", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient(RestException({"error_code": "INTERNAL_ERROR", "message": "database is locked"}))
    assert not is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no model"}))
    assert not is_transient(MlflowException("bad alias", error_code=INVALID_PARAMETER_VALUE))


def test_kubernetes_api_errors() -> None:
    assert is_transient(_api_exception(503))
    assert is_transient(_api_exception(410))  # a watch's resource version expired
    assert is_transient(_api_exception(404, kind="pods"))  # the pod was deleted or evicted under us
    assert not is_transient(_api_exception(404, kind="namespaces"))  # a wrong name stays wrong
    assert not is_transient(_api_exception(403))  # RBAC: retrying does not grant it


@pytest.mark.platform
def test_docker_registry_errors() -> None:
    import docker.errors
    import requests

    response = requests.Response()
    response.status_code = 502
    assert is_transient(docker.errors.APIError("push failed", response=response))
    response_400 = requests.Response()
    response_400.status_code = 400
    assert not is_transient(docker.errors.APIError("bad Dockerfile", response=response_400))
    assert is_transient(BuildError("pushing r/x:v1 failed: received unexpected HTTP status: 503 Service Unavailable"))
    assert not is_transient(BuildError("image build failed at Step 3/9 : RUN pip install"))


def test_a_wrapped_transient_cause_makes_a_generic_error_transient() -> None:
    download = _chained(ModelSourceError("could not download https://x/m.tar.gz"),
                        urllib.error.URLError(ConnectionResetError(104, "reset")))
    assert is_transient(download)


# -- deterministic: fail at once ---------------------------------------------------------------------
@pytest.mark.parametrize("exc", [
    DataValidationError("images: 3 rows failed"),
    ContractError("no serving_default signature"),
    GateRejected("mAP 0.31 < champion 0.40 + margin 0.01"),
    DeployError("rolled back to revision 3"),
    PromotionError("no 'previous' version to roll back to"),
    ImageTagConflict("tag v3-abc exists with another digest"),
    ValueError("bad param"), KeyError("x"), FileNotFoundError(2, "No such file"),
], ids=lambda e: type(e).__name__)
def test_data_validation_gate_rollback_and_bugs_are_deterministic(exc) -> None:
    assert not is_transient(exc)


def test_deterministic_errors_stay_deterministic_even_with_a_network_cause() -> None:
    # A rollout rolled back after a timeout is still a rolled-back deploy: never deploy it again.
    assert not is_transient(_chained(DeployError("rolled back"), TimeoutError("readiness timed out")))


@pytest.mark.platform
def test_gx_validation_failure_is_deterministic() -> None:
    from great_expectations_provider.common.errors import GXValidationFailed

    failed = GXValidationFailed(message="Great Expectations data validation failed.")
    assert failed.status_code == 500  # an AirflowException: its class attribute, not an HTTP answer
    assert not is_transient(failed)
    assert not is_transient(_chained(DataValidationError("annotations failed"), failed))


@pytest.mark.platform
def test_airflow_exception_status_code_500_is_not_a_server_error() -> None:
    """AirflowException has a class attribute status_code = 500: it says nothing about HTTP."""
    from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

    assert AirflowException.status_code == 500  # the trap this test guards against
    assert http_status(AirflowException("conn not found")) is None
    assert not is_transient(AirflowException("The conn_id `mlflow_default` isn't defined"))
    assert not is_transient(AirflowNotFoundException("no such connection"))


def test_http_status_reads_only_where_libraries_put_it() -> None:
    assert http_status(_requests_http_error(502)) == 502
    assert http_status(urllib.error.HTTPError("u", 404, "nf", {}, None)) == 404
    assert http_status(_api_exception(410)) == 410
    assert http_status(ValueError("500")) is None


# -- the one decorator the DAGs' tasks use -------------------------------------------------------------
@pytest.mark.platform
def test_fail_fast_unless_transient_turns_deterministic_failures_into_no_retry() -> None:
    import inspect

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from detectops.orchestration import fail_fast_unless_transient

    @fail_fast_unless_transient
    def task(exc: BaseException | None = None, params=None, run_id=None):
        """Docstring kept."""
        if exc is not None:
            raise exc
        return "ok"

    assert task() == "ok"
    # Airflow injects context by the task's signature: the wrapper must keep it.
    assert list(inspect.signature(task).parameters) == ["exc", "params", "run_id"]
    assert task.__doc__ == "Docstring kept."
    with pytest.raises(AirflowFailException, match="(?s)images: 3 rows failed.*not retried") as info:
        task(DataValidationError("images: 3 rows failed"))
    assert isinstance(info.value.__cause__, DataValidationError)
    with pytest.raises(ServiceUnavailableError):  # propagates unchanged: Airflow retries it
        task(ServiceUnavailableError("MLflow is starting"))
    with pytest.raises(AirflowSkipException):  # Airflow's control flow passes through untouched
        task(AirflowSkipException("nothing to do"))
    from airflow.sdk.exceptions import AirflowNotFoundException

    with pytest.raises(AirflowFailException):  # a missing connection stays missing
        task(AirflowNotFoundException("The conn_id `mlflow_default` isn't defined"))


def test_dag_defaults_retry_with_exponential_backoff() -> None:
    from datetime import timedelta

    from detectops.orchestration import dag_defaults

    defaults = dag_defaults()
    assert defaults["retries"] >= 2 and defaults["retry_exponential_backoff"] is True
    assert defaults["retry_delay"] <= timedelta(minutes=1) < defaults["max_retry_delay"]
