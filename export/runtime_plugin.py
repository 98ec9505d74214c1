"""The export package's runtimes, registered with :mod:`model.runners` (its plugin hook).

``pyproject.toml`` declares :func:`register` under the entry-point group ``daif_depth.runtimes``
(:data:`model.runners.RUNTIME_ENTRY_POINT_GROUP`); :func:`model.runners.create_runner` loads it the first
time it needs ``onnxruntime``, ``tensorrt`` or ``auto``'s ranking, so ``model`` never imports ``export``.
Calling :func:`register` again is harmless.
"""

from __future__ import annotations

from pathlib import Path

from model.runners import Runner, register_auto_ranker, register_runtime

__all__ = ["register"]


def _onnx(model: Path | None, device: str | None, with_confidence: bool) -> Runner:
    from export.runtime import OnnxRunner

    return OnnxRunner(model, with_confidence=with_confidence)


def _tensorrt(model: Path | None, device: str | None, with_confidence: bool) -> Runner:
    from export.runtime import TensorRTRunner

    return TensorRTRunner(model, with_confidence=with_confidence)


def _rank(candidates: list[tuple[str, Path]], device: str | None) -> dict[tuple[str, Path], str]:
    from export.runtime import rank_auto_candidates

    return rank_auto_candidates(candidates, torch_device=device)


def register() -> None:
    """Register ``onnxruntime`` and ``tensorrt`` (and the fastest-first ranking of ``auto``)."""
    from export.errors import ExportRuntimeError
    from export.metadata import MetadataError

    errors = (ExportRuntimeError, MetadataError)
    register_runtime("onnxruntime", _onnx, fallback_errors=errors)
    register_runtime("tensorrt", _tensorrt, fallback_errors=errors)
    register_auto_ranker(_rank)
