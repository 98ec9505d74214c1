"""Errors of the export tools and runtimes. Each says what is wrong, how to fix it and what works instead.

All but :class:`EngineBuildError` are ``ValueError`` subclasses, so the command-line tools print them as one
line (``error: ...``) with exit code 2 (see ``model.cli.run_cli``).
"""

from __future__ import annotations

__all__ = [
    "ExportRuntimeError",
    "RuntimeUnavailableError",
    "CudaUnavailableError",
    "EngineMismatchError",
    "PluginMissingError",
    "EngineBuildError",
]


class ExportRuntimeError(ValueError):
    """A model that cannot run (or be built) here. ``fallback`` names what will work instead."""

    def __init__(self, message: str, fallback: str | None = None) -> None:
        self.fallback = fallback
        super().__init__(message if not fallback else f"{message}. What works instead: {fallback}")


class RuntimeUnavailableError(ExportRuntimeError):
    """A Python package or tool the runtime needs is not installed (the message names it)."""


class CudaUnavailableError(ExportRuntimeError):
    """No usable CUDA driver or GPU (cuda-python / pycuda could not initialise)."""


class EngineMismatchError(ExportRuntimeError):
    """An engine built for another TensorRT version or another GPU; it must be rebuilt on this device."""


class PluginMissingError(ExportRuntimeError):
    """The GaussPSF TensorRT plugin library is not found or TensorRT cannot load it."""


class EngineBuildError(RuntimeError):
    """TensorRT failed to parse the ONNX file or to build the engine; the message carries TensorRT's errors."""
