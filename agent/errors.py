"""Errors of the agent, each carrying the subject it is about.

    AgentError            base; ``exit_code`` is the CLI's documented code
    ├── ConfigError       a setting or argument that is missing or malformed
    │                     (the variable or argument)
    ├── ScanError         a scan request no engine here can carry out
    │                     (the engine)
    ├── AssignmentError   a queue message the agent refuses to run
    │                     (the message id; ``reason`` says why, ``assignment``
    │                     is set when its signature verified)
    ├── QueueError        SQS refused or could not be reached (the queue)
    └── CoordinatorError  the coordinator could not be reached or rejected a
                          post (the URL)

A silent or unreachable target is never an error: engines report it as data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.messages import Assignment

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3


class AgentError(Exception):
    """Something the agent cannot do, about ``subject``."""

    exit_code = EXIT_USAGE

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.message = message


class ConfigError(AgentError):
    """A missing or malformed setting; the subject names the variable."""


class ScanError(AgentError):
    """A scan request that cannot be carried out; the subject is the engine."""


class AssignmentError(AgentError):
    """A message that is not a valid assignment for this agent, right now."""

    def __init__(
        self,
        subject: str,
        reason: str,
        message: str,
        assignment: Assignment | None = None,
    ) -> None:
        super().__init__(subject, message)
        self.reason = reason  # a short code for logs: expired, wrong-subnet, ...
        self.assignment = assignment  # only once the coordinator's signature held


class QueueError(AgentError):
    """An SQS call that failed; the subject is the queue's name."""

    exit_code = EXIT_INCONCLUSIVE


class CoordinatorError(AgentError):
    """The coordinator is unreachable or refused a request; the subject is the URL.

    ``status`` is the HTTP status when the coordinator answered at all.
    """

    exit_code = EXIT_INCONCLUSIVE

    def __init__(self, subject: str, message: str, status: int | None = None) -> None:
        super().__init__(subject, message)
        self.status = status
