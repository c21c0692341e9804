"""Errors a user can fix. The CLI prints their message (no traceback) and exits with code 2."""

from __future__ import annotations


class PosebenchError(Exception):
    """Base class for problems caused by input, configuration or environment, not by a bug.

    The message must say what is wrong, where (file, line, name) and what to do about it.
    """

    exit_code = 2


class WeightsError(PosebenchError):
    """A pretrained file is missing, cannot be fetched, or fails its checksum."""


class OfflineError(WeightsError):
    """A pretrained file is needed but downloads are disabled or the network is unreachable."""


class ChecksumError(WeightsError):
    """A pretrained file does not have the registered sha256; the bad file has been removed."""
