"""One interface for every runtime: PyTorch here, onnxruntime and TensorRT in :mod:`export.runtime`.

A runner takes a focal stack as NumPy ``(S, H, W, 3)`` float32 in [0, 1] with its focus distances in
metres and returns a :class:`Prediction` with metric depth, the AIF and a per-pixel confidence from the
physics check (:mod:`model.confidence`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from model.lens import LensProfile
from model.optics import check_focus_distances

__all__ = ["Prediction", "Runner", "TorchRunner", "create_runner", "check_stack_input", "RUNTIMES"]

log = logging.getLogger(__name__)
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")


@dataclass
class Prediction:
    """What every runner returns.

    Attributes:
        depth_m: ``(H, W)`` float32 metric depth, metres.
        aif: ``(H, W, 3)`` float32 all-in-focus image in [0, 1].
        confidence: ``(H, W)`` float32 in [0, 1] from the physics check, or ``None``.
        residual: ``(H, W)`` float32 mean absolute re-rendering error, or ``None``.
        rendered: ``(S, H, W, 3)`` re-rendered stack, or ``None``.
    """

    depth_m: np.ndarray
    aif: np.ndarray
    confidence: np.ndarray | None = None
    residual: np.ndarray | None = None
    rendered: np.ndarray | None = None


@runtime_checkable
class Runner(Protocol):
    """The runtime-independent predictor interface used by ``model.predict`` and ``device``."""

    name: str
    lens: LensProfile
    focus_m: list[float]

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction: ...


def check_stack_input(images: np.ndarray, focus_m: Sequence[float], min_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Validate a stack for prediction. Returns ``(images float32 (S,H,W,3), focus float32 (S,))``.

    Raises ``ValueError`` for wrong shapes, fewer than 2 frames, a count mismatch, non-finite pixels or
    focus distances that are not positive finite metres.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be (S, H, W, 3), got {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"a focal stack needs at least 2 images, got {arr.shape[0]}")
    if min(arr.shape[1:3]) < min_size:
        raise ValueError(f"images of {arr.shape[2]}x{arr.shape[1]} are too small (at least {min_size} pixels)")
    fm = check_focus_distances(list(np.asarray(focus_m, dtype=np.float64).reshape(-1)))
    if len(fm) != arr.shape[0]:
        raise ValueError(f"{len(fm)} focus distances for {arr.shape[0]} images")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf")
    return arr, np.asarray(fm, np.float32)


class TorchRunner:
    """PyTorch eager runner.

    Args:
        checkpoint: a checkpoint path, or ``None`` for the shipped default model.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
        with_confidence: also run the physics check (re-render, residual, confidence).
        max_psf_radius: cap on the physics check's PSF window, pixels.
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        with_confidence: bool = True,
        max_psf_radius: int | None = 32,
    ) -> None:
        import torch

        from model.checkpoint import load_checkpoint

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_checkpoint(checkpoint, map_location=self.device)
        self.lens = self.model.lens
        self.focus_m = list(self.model.focus_m)
        self.with_confidence = with_confidence
        self.max_psf_radius = max_psf_radius

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction:
        """Predict depth, AIF and confidence for one stack ``(S, H, W, 3)`` taken at ``focus_m`` metres."""
        import torch

        from model.confidence import physics_check

        arr, fm = check_stack_input(images, focus_m)
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).unsqueeze(0).to(self.device)
        f = torch.from_numpy(fm).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            out = self.model.net(x, f)
            conf = res = rendered = None
            if self.with_confidence:
                chk = physics_check(x, f, out.aif, out.depth_m, self.lens, max_radius=self.max_psf_radius)
                conf = chk.confidence[0, 0].float().cpu().numpy()
                res = chk.residual[0, 0].float().cpu().numpy()
                rendered = chk.rendered[0].permute(0, 2, 3, 1).float().cpu().numpy()
        return Prediction(
            depth_m=out.depth_m[0, 0].float().cpu().numpy(),
            aif=out.aif[0].permute(1, 2, 0).float().cpu().numpy(),
            confidence=conf,
            residual=res,
            rendered=rendered,
        )


def _stem(path: Path) -> Path:
    name = path.name
    for suffix in (".trt.onnx", ".onnx", ".engine", ".plan", ".pt", ".pth"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def auto_candidates(model: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """The ``auto`` order for ``model``: TensorRT engine, then ONNX (onnxruntime), then the checkpoint.

    For ``model = X.pt`` (or ``None``: the shipped checkpoint) the engine ``X.engine`` and ONNX file
    ``X.onnx`` exported beside it are tried first when they exist; a file named explicitly comes first.
    """
    from model.checkpoint import default_checkpoint_path

    path = Path(model) if model is not None else default_checkpoint_path()
    stem = _stem(path)
    kind_of = {".engine": "tensorrt", ".plan": "tensorrt", ".onnx": "onnxruntime"}
    named = kind_of.get(path.suffix.lower(), "torch")
    out: list[tuple[str, Path]] = []
    if model is not None:
        out.append((named, path))
    for kind, cand in (("tensorrt", stem.with_name(stem.name + ".engine")),
                       ("onnxruntime", stem.with_name(stem.name + ".onnx")),
                       ("torch", stem.with_name(stem.name + ".pt"))):
        if cand.is_file() and (kind, cand) not in out:
            out.append((kind, cand))
    if model is None and ("torch", path) not in out:
        out.append(("torch", path))
    return out


def _fallback_errors() -> tuple[type[BaseException], ...]:
    """Errors after which ``auto`` tries the next runtime: not installed, no GPU, an engine for another
    GPU or without its metadata file."""
    errs: tuple[type[BaseException], ...] = (ImportError, RuntimeError, OSError)
    try:
        from export.errors import ExportRuntimeError  # type: ignore[import-not-found]
        from export.metadata import MetadataError  # type: ignore[import-not-found]
    except ImportError:
        return errs
    return errs + (ExportRuntimeError, MetadataError)


def create_runner(
    runtime: str = "auto",
    model: str | os.PathLike[str] | None = None,
    device: str | None = None,
    with_confidence: bool = True,
) -> Runner:
    """Make a runner.

    Args:
        runtime: ``"torch"``, ``"onnxruntime"``, ``"tensorrt"`` or ``"auto"``. ``auto`` tries the named file
            and the ``X.engine`` / ``X.onnx`` / ``X.pt`` files beside it (:func:`auto_candidates`), fastest
            first where the export package ranks them (``export.runtime.rank_auto_candidates``, logged with
            the reason); a runtime that is not installed (or an engine this GPU cannot run) is skipped with a
            warning.
        model: a checkpoint (``.pt``), ONNX file or TensorRT engine; ``None`` for the shipped default.
        device: for the torch runner (``cpu``/``cuda``).
        with_confidence: run the physics check.

    Raises:
        ValueError: unknown runtime, or a model file that does not suit the runtime.
        ImportError: the runtime is not installed (the message names the package and the fallback).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        errors: list[str] = []
        candidates = auto_candidates(model)
        reasons = _rank_fastest(candidates, device)
        for i, (kind, path) in enumerate(candidates):
            try:
                runner = _make_runner(kind, path, device, with_confidence)
            except _fallback_errors() as e:
                if i == len(candidates) - 1:
                    raise
                errors.append(f"{kind} ({path.name}): {e}")
                log.warning("runtime %s is not usable for %s (%s); trying the next", kind, path, e)
                continue
            log.info("runtime: %s (%s)%s", kind, path, f": {reasons[(kind, path)]}" if (kind, path) in reasons else "")
            return runner
        raise ValueError("no usable runtime: " + "; ".join(errors))
    return _make_runner(runtime, Path(model) if model is not None else None, device, with_confidence)


def _rank_fastest(candidates: list[tuple[str, Path]], device: str | None) -> dict[tuple[str, Path], str]:
    """Reorder ``auto``'s candidates fastest first (``export.runtime.rank_auto_candidates``, in place) and
    return the reason for each; without the export package the order stays."""
    try:
        from export.runtime import rank_auto_candidates  # type: ignore[import-not-found]
    except ImportError:
        return {}
    return rank_auto_candidates(candidates, torch_device=device)


def _make_runner(runtime: str, model: Path | None, device: str | None, with_confidence: bool) -> Runner:
    suffix = model.suffix.lower() if model is not None else ""
    if runtime == "torch":
        if suffix in (".onnx", ".engine", ".plan"):
            raise ValueError(f"{model}: the torch runtime needs a checkpoint (.pt), not a {suffix} file")
        return TorchRunner(model, device=device, with_confidence=with_confidence)
    if runtime == "onnxruntime":
        from export.runtime import OnnxRunner  # type: ignore[import-not-found]

        return OnnxRunner(model, with_confidence=with_confidence)
    from export.runtime import TensorRTRunner  # type: ignore[import-not-found]

    return TensorRTRunner(model, with_confidence=with_confidence)
