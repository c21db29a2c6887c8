"""Domain errors. The CLI turns them into click exceptions; nothing else exits the process."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 500) -> str:
    """An exception as one short line for a record's reason: the first line of its message
    (CUDA and Triton errors run to pages), or its type when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class AibenchError(Exception):
    """Base class: a failure the user can understand and act on (exit code 1)."""


class UsageError(AibenchError):
    """The user asked for something that does not exist or is malformed (exit code 2)."""


class WorkloadError(AibenchError):
    """A workload could not be set up or run."""


class CheckFailed(WorkloadError):
    """A kernel or model produced a wrong result: its timing must not be reported."""


class SuiteError(UsageError):
    """A suite file is missing or invalid; the message names the file, line and key."""


class BundleError(AibenchError):
    """A bundle could not be packed or read."""


class Unsupported(WorkloadError):
    """This workload/backend cannot run here (no fp8 on this GPU, model does not fit, ...).

    Raised from a backend's setup; the record becomes `skipped` with this message as reason.
    """
