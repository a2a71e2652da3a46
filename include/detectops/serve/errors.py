"""Request errors: every bad input becomes a 4xx JSON answer that names the problem.

The body is TF-Serving compatible (``{"error": "<message>"}``, which TF-Serving clients read)
plus a stable machine-readable ``code``::

    {"error": "instance 0: not an image (cannot identify image file)", "code": "not_an_image"}
"""

from __future__ import annotations

from detectops.errors import DetectOpsError


class RequestError(DetectOpsError):
    """A client error: the request is answered with ``status`` and a JSON body; the server goes on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}

    def for_instance(self, index: int) -> RequestError:
        """The same error, saying which instance of a batch request caused it."""
        return RequestError(self.status, self.code, f"instance {index}: {self.message}")


def bad_request(code: str, message: str) -> RequestError:
    return RequestError(400, code, message)


def too_large(code: str, message: str) -> RequestError:
    return RequestError(413, code, message)
