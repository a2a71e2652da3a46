"""Errors a user can meet. Each message says what is wrong and what to do."""


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
