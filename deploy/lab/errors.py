"""Errors of the local lab; the CLI prints any of them as one line and exits 2.

LabError            base: what went wrong and with what (``subject``)
├── SpecError       a lab spec that cannot be used (subject: file:line)
├── PrivilegeError  not root
├── LabStateError   a lab is up when it must not be, or down when it must be up
├── NetworkError    an ip, nft or sysctl command failed (subject: the command)
└── ServiceError    a lab process died or never became ready (``log``: its log)
"""

from __future__ import annotations

from pathlib import Path


class LabError(Exception):
    """Something the lab could not do; ``subject`` names what it is about."""

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(message)
        self.subject = subject
        self.message = message


class SpecError(LabError):
    """A lab spec with a mistake; the message starts with file:line."""


class PrivilegeError(LabError):
    """The lab needs root for namespaces, links and nftables."""


class LabStateError(LabError):
    """The lab is not in the state a command needs (already up, not up, leftovers)."""


class NetworkError(LabError):
    """A command that builds or removes the lab network failed."""


class ServiceError(LabError):
    """A lab process exited or did not answer in time."""

    def __init__(self, subject: str, message: str, log: Path) -> None:
        super().__init__(subject, f"{message}; see {log}")
        self.log = log
