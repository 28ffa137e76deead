"""The API server's errors (apimachinery's ``StatusError``): each carries the HTTP code, the
reason and the message the API server would answer with, and turns into the ``metav1.Status`` it
would send. The messages are the API server's, word for word, where it has one.
"""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    """A failed request, as ``metav1.Status``: ``code`` (HTTP), ``reason`` (StatusReason)."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def status(self) -> dict[str, Any]:
        """The ``metav1.Status`` object the API server would answer with."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _details(group_resource: str, name: str) -> dict[str, Any]:
    resource, _, group = group_resource.partition(".")
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


class NotFound(StatusError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, group_resource: str, name: str) -> NotFound:
        return cls(f'{group_resource} "{name}" not found', details=_details(group_resource, name))


class AlreadyExists(StatusError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, group_resource: str, name: str) -> AlreadyExists:
        return cls(
            f'{group_resource} "{name}" already exists', details=_details(group_resource, name)
        )


class Conflict(StatusError):
    code = 409
    reason = "Conflict"

    @classmethod
    def of(cls, group_resource: str, name: str, why: str) -> Conflict:
        return cls(
            f'Operation cannot be fulfilled on {group_resource} "{name}": {why}',
            details=_details(group_resource, name),
        )


class Gone(StatusError):
    """410 Expired: the resourceVersion (or continue token) asked for was compacted away.
    ``continue_``: the token of an inconsistent continue (the rest of the list at the latest
    revision), which the API server sends in the Status's metadata."""

    code = 410
    reason = "Expired"

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, continue_: str = ""
    ) -> None:
        super().__init__(message, details=details)
        self.continue_ = continue_

    def status(self) -> dict[str, Any]:
        status = super().status()
        if self.continue_:
            status["metadata"] = {"continue": self.continue_}
        return status


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Invalid(StatusError):
    """422: the object itself is wrong (no name, a kind that does not match, ...)."""

    code = 422
    reason = "Invalid"


class RequestEntityTooLarge(StatusError):
    code = 413
    reason = "RequestEntityTooLarge"


class TooLargeResourceVersion(StatusError):
    """A resourceVersion newer than the store's revision (the API server answers 504 Timeout)."""

    code = 504
    reason = "Timeout"


class InternalError(StatusError):
    """500: what is stored cannot be read (undecodable value, unknown encoding, no key)."""

    code = 500
    reason = "InternalError"


class ServiceUnavailable(StatusError):
    """503: etcd did not answer (unreachable, no leader, timed out)."""

    code = 503
    reason = "ServiceUnavailable"
