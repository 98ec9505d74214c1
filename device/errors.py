"""Errors raised by the device package."""

from __future__ import annotations

__all__ = ["CameraError", "CameraNotFoundError", "CameraClosedError"]


class CameraError(RuntimeError):
    """A camera failed at run time (disconnected, timed out, I/O error). The capture loop reopens it."""


class CameraNotFoundError(CameraError):
    """The requested camera (or its driver / Python package) is not present on this machine."""


class CameraClosedError(CameraError):
    """A method was called on a camera after ``close()``."""
