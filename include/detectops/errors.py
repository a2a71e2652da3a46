"""Errors a user can meet. Each message says what is wrong and what to do.

Also which failures are worth a retry (``is_transient``): see the second half of this module.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error


class DetectOpsError(Exception):
    """Base class: an expected failure with an actionable message."""


class DataValidationError(DetectOpsError):
    """A dataset failed its checks; it must not reach training or evaluation."""


class ModelSourceError(DetectOpsError):
    """A model could not be fetched, verified or converted."""


class ContractError(ModelSourceError):
    """A SavedModel does not satisfy the detector contract (TF2 Detection Model Zoo signature)."""


class ServiceUnavailableError(DetectOpsError):
    """An external service (MLflow, registry, cluster, Docker) could not be reached."""


class BuildError(DetectOpsError):
    """A container image failed to build or push."""


class DeployError(DetectOpsError):
    """A rollout failed (and was rolled back)."""


class GateRejected(DetectOpsError):
    """A candidate model failed the gate against the champion: it must not be promoted."""


class PromotionError(DetectOpsError):
    """An alias move was refused (e.g. a rollback with no ``previous`` version to return to)."""


class ImageTagConflict(BuildError):
    """An image tag already names another build in the registry; tags are never overwritten."""


# ----------------------------------------------------------------------------------------------
# Transient or deterministic? Airflow retries a failed task; that helps only when the cause can
# go away by itself (the network, a server starting up or overloaded, a pod that was evicted).
# A bad dataset, a failed gate or a rolled-back deploy fails the same way every time, and a
# retry would validate, train or deploy it again. ``is_transient`` decides; the DAGs' tasks use
# ``detectops.orchestration.fail_fast_unless_transient``, which turns the rest into
# ``AirflowFailException`` (no retry).
#
# Libraries are looked up in ``sys.modules``, never imported here: an exception of a library
# that was never imported cannot be the one being classified, and this module stays light.

#: Failures that no retry can fix, whatever network error happened on the way.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    DataValidationError, ContractError, GateRejected, PromotionError, ImageTagConflict, DeployError,
)
#: Third-party deterministic failures, by (module, class name).
_DETERMINISTIC_FOREIGN = (
    ("great_expectations_provider.common.errors", "GXValidationFailed"),
    ("airflow.sdk.exceptions", "AirflowFailException"),
)
#: HTTP answers that mean "try again later": throttled, timed out, or a server error.
TRANSIENT_STATUS = frozenset({408, 425, 429})
#: MLflow error codes a server sends while it starts, is overloaded, or hits a transient fault.
_MLFLOW_TRANSIENT_CODES = frozenset({
    "TEMPORARILY_UNAVAILABLE", "WORKSPACE_TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "SERVICE_UNDER_MAINTENANCE",
})
_TRANSIENT_FOREIGN = (
    ("requests.exceptions", "ConnectionError"), ("requests.exceptions", "Timeout"),
    ("requests.exceptions", "ChunkedEncodingError"), ("requests.exceptions", "RetryError"),
    ("urllib3.exceptions", "ProtocolError"), ("urllib3.exceptions", "MaxRetryError"),
    ("urllib3.exceptions", "NewConnectionError"), ("urllib3.exceptions", "TimeoutError"),
    ("http.client", "IncompleteRead"), ("http.client", "RemoteDisconnected"),
)
# The docker engine reports a failed push only as text in its stream ("received unexpected HTTP
# status: 503 Service Unavailable"); no status code reaches us.
_PUSH_TEXT_TRANSIENT = ("unexpected HTTP status: 5", "connection refused", "connection reset", "i/o timeout")


def _foreign(names: tuple[tuple[str, str], ...]) -> tuple[type, ...]:
    found = (getattr(sys.modules.get(module), name, None) for module, name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


def _causes(exc: BaseException):
    """``exc`` and what it was raised from or while handling, innermost last (cycle-safe)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed request, read only where each library really puts it.

    Not a generic ``status_code`` attribute: Airflow's ``AirflowException`` (and so the GX
    provider's ``GXValidationFailed``) has a class attribute ``status_code = 500`` that says
    nothing about any HTTP answer; reading it made deterministic failures look like 5xx.
    """
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code
    response = getattr(exc, "response", None)  # requests.HTTPError and docker's APIError
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    if type(exc).__name__ == "ApiException" and isinstance(getattr(exc, "status", None), int):
        return exc.status  # the kubernetes client
    return None


def _kubernetes_kind(exc: BaseException) -> str | None:
    """The resource kind an ``ApiException`` is about (``pods``), from its Status body."""
    try:
        return (json.loads(getattr(exc, "body", None) or "{}").get("details") or {}).get("kind")
    except (ValueError, AttributeError):
        return None


def _status_is_transient(exc: BaseException, status: int) -> bool:
    if status >= 500 or status in TRANSIENT_STATUS:
        return True
    if type(exc).__name__ == "ApiException":
        # 410 Gone: a watch's resource version expired. 404 on a pod: it was deleted or evicted
        # while we watched it; a retry starts a new one. A 404 on anything else is a wrong name.
        return status == 410 or (status == 404 and _kubernetes_kind(exc) == "pods")
    return False


def _mlflow_is_transient(exc: BaseException) -> bool | None:
    if type(exc).__module__ != "mlflow.exceptions":
        return None
    code = getattr(exc, "error_code", None)
    if code in _MLFLOW_TRANSIENT_CODES:
        return True
    # A server-side fault (e.g. "database is locked") answered as JSON: RestException, or the
    # client's message for a non-JSON error page. A plain client-side MlflowException also
    # defaults to INTERNAL_ERROR, so the code alone is not enough.
    return code == "INTERNAL_ERROR" and (type(exc).__name__ == "RestException" or str(exc).startswith("API request to"))


def _one_is_transient(exc: BaseException) -> bool:
    """Whether this one exception (not its causes) names a fault that can go away by itself."""
    if isinstance(exc, ServiceUnavailableError):
        return True
    status = http_status(exc)
    if status is not None:
        return _status_is_transient(exc, status)
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
        return True
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return isinstance(reason, BaseException) and _one_is_transient(reason)
    mlflow = _mlflow_is_transient(exc)
    if mlflow is not None:
        return mlflow
    if isinstance(exc, BuildError):
        text = str(exc).lower()
        return any(marker.lower() in text for marker in _PUSH_TEXT_TRANSIENT)
    return isinstance(exc, _foreign(_TRANSIENT_FOREIGN))


def is_deterministic(exc: BaseException) -> bool:
    """A data, validation, gate, promotion, tag or rollback failure: retrying repeats it."""
    return isinstance(exc, DETERMINISTIC_ERRORS + _foreign(_DETERMINISTIC_FOREIGN))


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can succeed: network errors, HTTP 5xx/429, timeouts, a service starting
    up, a pod deleted or evicted, a registry's 5xx.

    A deterministic failure (``is_deterministic``) is never transient, whatever it was raised
    from: a deploy rolled back after a readiness timeout must not be deployed again. Otherwise
    the exception or anything in its cause chain decides (``ModelSourceError`` from a reset
    download is transient). A failure nobody named is deterministic: retrying a bug repeats it,
    and a person re-runs the task once the log has been read.
    """
    if is_deterministic(exc):
        return False
    return any(_one_is_transient(e) for e in _causes(exc))
