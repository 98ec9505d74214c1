"""``GaussPSF`` for onnxruntime on the CPU: an onnxruntime-extensions Python op (domain ``ai.onnx.contrib``).

The physics graph's re-rendering node (op type ``GaussPSF``, inputs ``image (N, C, H, W)`` and ``sigma
(N, 1, H, W)`` float32, integer attribute ``radius``) is computed by one of two backends with the same math
(``docs/ARCHITECTURE.md``, ``model.render``):

* ``"torch"`` - :func:`model.render.gauss_psf` (vectorised, multi-threaded; the default),
* ``"host"`` - ``libgausspsf_host.so`` through :func:`export.psf_ext.host_gauss_psf`: the CUDA kernel's own
  per-pixel code compiled for the CPU (single-threaded, slow, but exactly the plugin's arithmetic).

onnxruntime-extensions keeps Python ops in one process-wide table, so the op is registered once
(:func:`register`) and the backend is chosen with :func:`set_backend`. A session that runs the physics
graph needs ``SessionOptions.register_custom_ops_library(library_path())`` (:func:`session_options`).
onnxruntime-extensions also needs the model's IR version to be at most 13 (the exporter writes 8).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "register", "set_backend", "get_backend", "library_path", "session_options", "gauss_psf_numpy"]

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "host")
_state: dict[str, Any] = {"registered": False, "backend": "auto"}


def set_backend(name: str) -> None:
    """Choose the backend of every GaussPSF Python op in this process: ``auto`` (torch), ``torch``, ``host``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown GaussPSF backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    _state["backend"] = name


def get_backend() -> str:
    """The backend in use (``auto`` resolved: ``torch`` if importable, else ``host``)."""
    name = _state["backend"]
    if name != "auto":
        return name
    try:
        import torch  # noqa: F401
    except ImportError:
        return "host"
    return "torch"


def gauss_psf_numpy(image: np.ndarray, sigma: np.ndarray, radius: int) -> np.ndarray:
    """The op's computation: ``image (N, C, H, W)``, ``sigma (N, 1, H, W)`` pixels -> ``(N, C, H, W)`` float32."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    sigma = np.ascontiguousarray(sigma, dtype=np.float32)
    radius = int(radius)
    if get_backend() == "host":
        from export.psf_ext import host_gauss_psf

        return host_gauss_psf(image, sigma, radius)
    import torch

    from model.render import gauss_psf

    with torch.inference_mode():
        return gauss_psf(torch.from_numpy(image), torch.from_numpy(sigma), radius).numpy()


def _gauss_psf_op(image: np.ndarray, sigma: np.ndarray, **attributes: Any) -> np.ndarray:
    return gauss_psf_numpy(image, sigma, int(attributes["radius"]))


def register() -> None:
    """Register the ``GaussPSF`` Python op with onnxruntime-extensions (once per process).

    Raises ``ImportError`` naming the package when onnxruntime-extensions is missing.
    """
    if _state["registered"]:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError:
        raise ImportError(
            "the physics graph needs onnxruntime-extensions for its GaussPSF op: pip install onnxruntime-extensions "
            "(or export the network alone: python -m export onnx --graph net)") from None
    from export.targets import PSF_OP_TYPE

    onnx_op(op_type=PSF_OP_TYPE, inputs=[PyCustomOpDef.dt_float, PyCustomOpDef.dt_float],
            outputs=[PyCustomOpDef.dt_float], attrs={"radius": PyCustomOpDef.dt_int64})(_gauss_psf_op)
    _state["registered"] = True
    log.debug("registered the GaussPSF Python op (backend %s)", get_backend())


def library_path() -> str:
    """Path of the onnxruntime-extensions custom-op library (registers the op first)."""
    register()
    from onnxruntime_extensions import get_library_path

    return get_library_path()


def session_options(threads: int | None = None, custom_ops: bool = True) -> Any:
    """``onnxruntime.SessionOptions`` with the GaussPSF op library registered (``custom_ops``) and
    ``threads`` intra-op threads (``None``: onnxruntime's default)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    if custom_ops:
        so.register_custom_ops_library(library_path())
    return so
