"""Errors of the coordinator, each carrying the subject it is about.

CoordinatorError          base; ``exit_code`` is the CLI's documented code
├── PolicyError           a policy file that cannot be used (file, line)
├── UsageError            a command line that cannot be followed (argument)
├── NotFoundError         a run, pair or subnet that does not exist
├── QueueError            SQS refused or could not be reached (queue)
└── ServiceError          the coordinator service could not be reached or
                          answered with an error (url)
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_INCONCLUSIVE = 3


class CoordinatorError(Exception):
    """Something the coordinator cannot do, about ``subject``."""

    exit_code = EXIT_USAGE

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(f"{subject}: {message}" if subject else message)
        self.subject = subject
        self.message = message


class PolicyError(CoordinatorError):
    """A policy file with a problem; the subject is ``file:line``."""


class UsageError(CoordinatorError):
    """A command-line argument that cannot be followed."""


class NotFoundError(CoordinatorError):
    """A run, pair or subnet that does not exist."""


class QueueError(CoordinatorError):
    """An SQS call that failed; the subject is the queue."""

    exit_code = EXIT_INCONCLUSIVE


class ServiceError(CoordinatorError):
    """The coordinator service is unreachable or refused a request."""

    exit_code = EXIT_INCONCLUSIVE
