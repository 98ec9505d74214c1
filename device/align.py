"""Focus-breathing alignment: undo the change of image scale that comes with refocusing.

A thin lens focused at ``d_f`` sits ``s = f d_f / (d_f - f)`` from the sensor, and the image of the scene
scales with ``s`` (chief rays through the lens centre). Frames of a sweep therefore differ in
magnification by ``s(d_f) / s(d_ref)``. :func:`align_frame` rescales a frame about the image centre so it
matches the frame focused at the reference distance. The default reference is the nearest focus of
the sweep (the largest ``s``), so every other frame is magnified (``>= 1``) and no frame needs pixels
from outside the image.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from model.optics import ThinLensLike, breathing_magnification, sensor_distance_m

__all__ = ["image_distance_m", "breathing_ratio", "align_frame", "align_stack"]


def image_distance_m(focus_m: float, lens: ThinLensLike) -> float:
    """Lens-to-sensor distance ``s = f d_f / (d_f - f)`` for focus at ``focus_m`` metres (``f`` at infinity):
    :func:`model.optics.sensor_distance_m` of ``1 / focus_m`` dioptres."""
    d = float(focus_m)
    if not (math.isinf(d) and d > 0) and not d > lens.focal_length_m:
        raise ValueError(f"focus distance {focus_m} m is not beyond the focal length {lens.focal_length_m} m")
    return sensor_distance_m(0.0 if math.isinf(d) else 1.0 / d, lens)


def breathing_ratio(focus_m: float, reference_m: float, lens: ThinLensLike) -> float:
    """Magnification of a frame focused at ``focus_m`` relative to one focused at ``reference_m``: ``s/s_ref``
    (:func:`model.optics.breathing_magnification`)."""
    return breathing_magnification(focus_m, lens, reference_m)


def align_frame(image: np.ndarray, focus_m: float, reference_m: float, lens: ThinLensLike) -> np.ndarray:
    """Rescale ``image`` ``(H, W, C)`` taken at ``focus_m`` to the magnification of ``reference_m``.

    Output pixel ``x`` samples the input at ``c + r (x - c)`` with ``r = s(focus)/s(reference)`` and ``c``
    the image centre (bilinear; borders replicated where ``r > 1``). Returns float32 of the same shape.
    """
    img = np.asarray(image, dtype=np.float32)
    r = breathing_ratio(focus_m, reference_m, lens)
    if abs(r - 1.0) < 1e-7:
        return img.copy()
    h, w = img.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    mat = np.array([[r, 0.0, cx * (1.0 - r)], [0.0, r, cy * (1.0 - r)]], np.float64)
    out = cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(img.shape).astype(np.float32, copy=False)


def align_stack(images: np.ndarray, focus_m: Sequence[float], lens: ThinLensLike, reference_m: float | None = None) -> np.ndarray:
    """Align every frame of ``images`` ``(S, H, W, 3)`` to ``reference_m`` (default: the nearest focus)."""
    arr = np.asarray(images, dtype=np.float32)
    fs = [float(f) for f in focus_m]
    if arr.ndim != 4 or arr.shape[0] != len(fs):
        raise ValueError(f"images must be (S, H, W, 3) with S = {len(fs)}, got {arr.shape}")
    ref = min(fs) if reference_m is None else float(reference_m)
    return np.stack([align_frame(arr[i], fs[i], ref, lens) for i in range(len(fs))])
