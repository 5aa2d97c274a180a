"""Errors raised by the EPM client and its authentication.

    EpmError
    ├── EpmAuthError         credentials or identity-domain setup; an admin must act
    ├── JobNotFound          the pod returned 404 for the job
    ├── EpmMaintenance       503 with a non-JSON body: the daily maintenance window
    ├── EpmRetryableError    429, 502, 503 (JSON), 504; carries the Retry-After delay
    │   └── EpmConnectionError   connection failure or timeout
    └── EpmResponseError     any other unexpected status or body

None of these is a job failure: a job's status comes only from a job status body.
Messages never contain a token, password or client secret.
"""

from __future__ import annotations


class EpmError(Exception):
    """Base class of every error of the EPM client."""


class EpmAuthError(EpmError):
    """Authentication failed in a way that only an admin can fix.

    ``key`` groups repeats of one problem: ``epm_auth`` for the identity domain,
    ``epm_auth:<pod url>`` for one pod. ``fix`` is the admin-facing text: what is
    wrong and what to do. ``oauth_error`` is the OAuth error code, when there is one.
    """

    def __init__(self, key: str, fix: str, oauth_error: str | None = None) -> None:
        super().__init__(fix)
        self.key = key
        self.fix = fix
        self.oauth_error = oauth_error


class JobNotFound(EpmError):
    """The pod has no job with this id (HTTP 404)."""


class EpmMaintenance(EpmError):
    """The pod is in its daily maintenance window (HTTP 503 with a non-JSON body)."""


class EpmRetryableError(EpmError):
    """A temporary failure; ``retry_after`` is the server's delay in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EpmConnectionError(EpmRetryableError):
    """The request did not reach the server or timed out."""


class EpmResponseError(EpmError):
    """The server returned a status or body that the client does not handle."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
