"""The one writer of prediction folders (``docs/FORMATS.md``, "Predictions").

``model.predict`` and the device's ``PredictionWriter`` both call :func:`write_prediction_folder`, so a
prediction folder looks the same whoever wrote it:

- ``depth.npy``: float32 ``(H, W)``, metres, the input's size;
- ``aif.png``: the all-in-focus image, 8-bit RGB;
- ``confidence.npy`` (when there is a confidence): float32 ``(H, W)`` in [0, 1] (clipped; NaN -> 0);
- ``depth.png`` (with ``depth_png``): the colour-mapped depth with a scale in metres
  (:func:`model.visualize.depth_png_with_scale`);
- ``prediction.json`` (with ``metadata``): where the prediction came from and what was found about its
  input (warnings, whether the stack carried depth evidence, a resize);
- anything ``extra`` writes into the folder (``model.predict`` adds ``figure.png``).

The folder is built in a temporary sibling and renamed into place (:func:`model.atomic.atomic_dir`): a
run killed half-way leaves the old folder or the new one, never a mix (the temporary folder is removed
by :func:`model.atomic.remove_orphans` on the next run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from model.atomic import atomic_dir, atomic_save_npy, atomic_write_bytes, atomic_write_json

__all__ = ["PREDICTION_FILES", "METADATA_FILE", "write_prediction_folder", "is_prediction_folder", "clean_confidence"]

PREDICTION_FILES = ("depth.npy", "aif.png")
"""The files every prediction folder holds."""
METADATA_FILE = "prediction.json"


def clean_confidence(confidence: np.ndarray) -> np.ndarray:
    """``confidence`` as float32 in [0, 1]: clipped, NaN and inf -> 0."""
    c = np.asarray(confidence, np.float32)
    return np.clip(np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0).astype(np.float32)


def is_prediction_folder(folder: str | os.PathLike[str]) -> bool:
    """True for a finished prediction folder: it holds ``depth.npy`` and ``aif.png`` and no ``stack.json``."""
    p = Path(folder)
    return p.is_dir() and not (p / "stack.json").exists() and all((p / f).is_file() for f in PREDICTION_FILES)


def write_prediction_folder(
    folder: str | os.PathLike[str],
    depth_m: np.ndarray,
    aif: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    near_m: float,
    far_m: float,
    depth_png: bool = True,
    metadata: Mapping[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one prediction folder atomically.

    Args:
        folder: the folder to create (its parent is created).
        depth_m: ``(H, W)`` depth, metres.
        aif: ``(H, W, 3)`` all-in-focus image, float in [0, 1].
        confidence: ``(H, W)`` confidence, or ``None`` (no ``confidence.npy``).
        near_m, far_m: the range of the ``depth.png`` colour scale, metres.
        depth_png: also write ``depth.png``.
        metadata: written as ``prediction.json`` when given.
        extra: called with the temporary folder to add more files (e.g. ``figure.png``).
        overwrite: replace an existing ``folder`` (the caller decides that it is a prediction folder).

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is false.
        ValueError: shapes that do not fit together.
        OSError: a write failed (a full disk: errno ``ENOSPC``); ``folder`` is left as it was.
    """
    depth = np.asarray(depth_m, np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    img = np.asarray(aif, np.float32)
    if img.shape != depth.shape + (3,):
        raise ValueError(f"aif is {img.shape}, depth is {depth.shape}")
    conf = None if confidence is None else clean_confidence(confidence)
    if conf is not None and conf.shape != depth.shape:
        raise ValueError(f"confidence is {conf.shape}, depth is {depth.shape}")
    from model.formats import encode_png

    folder = Path(folder)
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        atomic_save_npy(tmp / "depth.npy", depth)
        atomic_write_bytes(tmp / "aif.png", encode_png(img))
        if conf is not None:
            atomic_save_npy(tmp / "confidence.npy", conf)
        if depth_png:
            from model.visualize import depth_png_with_scale

            depth_png_with_scale(tmp / "depth.png", depth, float(near_m), float(far_m))
        if extra is not None:
            extra(tmp)
        if metadata is not None:
            atomic_write_json(tmp / METADATA_FILE, dict(metadata))
    return folder
