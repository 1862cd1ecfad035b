"""Typed errors and the exit codes the CLI maps them to (httpie's ExitStatus, one place for the user's view)."""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # argparse's own
    UNKNOWN_DEVICE = 3
    UNKNOWN_RUNTIME = 4
    RUNTIME_MISSING = 5
    NOT_WRITABLE = 6
    CORRUPT_JOURNAL = 7
    WOULD_OVERWRITE = 8
    BAD_LUT = 9
    HOST_KEY = 10
    CONNECTION = 11
    DEVICE_FAILED = 12
    INFEASIBLE = 13
    BAD_INPUT = 14
    INTERRUPTED = 130


class LutnasError(Exception):
    """Base of every error the CLI reports in one line; ``status`` is the exit code."""

    status = ExitStatus.ERROR


class UnknownDevice(LutnasError):
    status = ExitStatus.UNKNOWN_DEVICE


class UnknownRuntime(LutnasError):
    status = ExitStatus.UNKNOWN_RUNTIME


class RuntimeMissing(LutnasError):
    status = ExitStatus.RUNTIME_MISSING


class NotWritable(LutnasError):
    status = ExitStatus.NOT_WRITABLE


class CorruptJournal(LutnasError):
    status = ExitStatus.CORRUPT_JOURNAL


class WouldOverwrite(LutnasError):
    status = ExitStatus.WOULD_OVERWRITE


class BadLut(LutnasError):
    status = ExitStatus.BAD_LUT


class HostKeyError(LutnasError):
    status = ExitStatus.HOST_KEY


class ConnectionFailed(LutnasError):
    status = ExitStatus.CONNECTION


class DeviceFailed(LutnasError):
    status = ExitStatus.DEVICE_FAILED


class BadInput(LutnasError):
    status = ExitStatus.BAD_INPUT


class BadSpace(BadInput):
    """A space file (profiler/spaces/*.toml) that cannot be read or checked."""


class UnknownSpace(BadInput, ValueError):
    """No space of that name is registered (ValueError for callers that caught the old error)."""
