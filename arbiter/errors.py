"""The project's one error hierarchy.

Every error a user can cause says what happened and what to do, in one sentence, so the
command line prints ``str(error)`` and never a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arbiter.lang.diagnostics import Diagnostic


class SovereignError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SovereignError):
    """Settings, a secrets file or a price table is wrong."""


class PolicyError(SovereignError):
    """A policy does not check; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic], message: str | None = None) -> None:
        self.diagnostics = list(diagnostics)
        if message is None:
            message = "\n".join(d.format() for d in self.diagnostics) or "the policy is invalid"
        super().__init__(message)


class InputError(SovereignError):
    """A task or command argument is not acceptable (unknown kind, empty prompt, ...)."""


class LedgerUnavailable(SovereignError):
    """The ledger database cannot be reached; nothing is dispatched without a decision record."""


class PriceMissing(SovereignError):
    """A cloud model has no price, so it is never dispatched."""


class TaskBlocked(SovereignError):
    """The arbiter refused a task (deny or halt); carries the decision."""

    def __init__(self, message: str, decision: Any = None, task_id: str | None = None) -> None:
        super().__init__(message)
        self.decision = decision
        self.task_id = task_id


class BrokerUnavailable(SovereignError):
    """The message broker does not answer."""


class BackendError(SovereignError):
    """A model backend failed; subclasses say whether a retry can help."""

    retryable: bool = False


class TransientBackendError(BackendError):
    """Rate limit, overload, 5xx or timeout: retry with backoff."""

    retryable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendUnavailable(TransientBackendError):
    """The backend's server cannot be reached at all (connection refused)."""


class PermanentBackendError(BackendError):
    """A 4xx other than rate limiting: a retry gives the same answer."""


class ModelNotFound(PermanentBackendError):
    """The model is not installed or not known to the provider."""


class ConfidentialRefused(PermanentBackendError):
    """A cloud backend was handed a confidential request; it never sends one."""


class TaskParked(SovereignError):
    """The arbiter parked a task for a human's approval; it is not published."""

    def __init__(self, message: str, decision: Any = None, task_id: str | None = None) -> None:
        super().__init__(message)
        self.decision = decision
        self.task_id = task_id


class TaskFailed(SovereignError):
    """A task ran and failed; the message says why."""
