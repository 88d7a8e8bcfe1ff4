"""The site's one error type: a message a person may read, and one for the log.

Only the engine adapter (``playground.engine``) turns runtime errors into it; services raise
it for broken rules (limits, ownership, states); views show ``user_message``.
"""

from __future__ import annotations


class ApplicationError(Exception):
    def __init__(
        self, user_message: str, log_message: str | None = None, *, temporary: bool = False
    ) -> None:
        super().__init__(log_message or user_message)
        self.user_message = user_message
        self.log_message = log_message or user_message
        self.temporary = temporary

    def __str__(self) -> str:
        return self.log_message


class PermissionDenied(ApplicationError):
    """The lab or instance belongs to someone else (views answer 403)."""

    def __init__(self, what: str) -> None:
        super().__init__("This is not yours.", f"permission denied: {what}")


class NotFound(ApplicationError):
    def __init__(self, what: str) -> None:
        super().__init__("There is no such thing here.", f"not found: {what}")


class LimitReached(ApplicationError):
    pass


class AtCapacity(ApplicationError):
    """The host runs as many instances as it may; the start waits in the queue."""

    def __init__(self, *, position: int | None) -> None:
        super().__init__(
            "The playground is full right now. You are in the queue.", "host at capacity"
        )
        self.position = position
