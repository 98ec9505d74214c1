"""``GaussPSF`` for onnxruntime on the CPU (domain ``ai.onnx.contrib``): native C++ op, or a Python op.

The physics graph's re-rendering node (op type ``GaussPSF``, inputs ``image (N, C, H, W)`` and ``sigma
(N, 1, H, W)`` float32, integer attribute ``radius``) is computed by one of these backends, all with the
same math (``docs/ARCHITECTURE.md``, ``model.render``):

* ``"native"`` - ``libgausspsf_ort.so`` (:mod:`export.ort_native`): a C++ onnxruntime custom op built from
  ``export/plugins/gaussPsf`` (the factorised CPU form of the CUDA kernel's ``gaussPsfMath.h``), on
  onnxruntime's intra-op threads; no Python in the loop. Built on first use (needs a C++ compiler and the
  onnxruntime headers that ``scripts/install.sh`` fetches).
* ``"torch"`` - an onnxruntime-extensions Python op computed by :func:`model.render.gauss_psf` (data passes
  through Python lists: several times slower than PyTorch itself),
* ``"host"`` - the same Python op computed by ``libgausspsf_host.so`` (:func:`export.psf_ext.host_gauss_psf`,
  the CUDA kernel's per-pixel code on one CPU thread: exact, very slow).

``"auto"`` picks ``native`` when it can be built or found, else ``torch`` (with a warning that says why the
native op is missing and how to get it), else ``host``. onnxruntime-extensions keeps Python ops in one
process-wide table, so the Python op is registered once (:func:`register`) and its backend chosen with
:func:`set_backend`. :func:`session_options` returns ``SessionOptions`` with the chosen op library
registered; onnxruntime-extensions also needs the model's IR version to be at most 13 (the exporter writes 8).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "OPTIMIZATION_LEVELS", "register", "set_backend", "get_backend", "library_path",
           "session_options", "gauss_psf_numpy"]

log = logging.getLogger(__name__)
BACKENDS = ("auto", "native", "torch", "host")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
"""onnxruntime graph optimisation levels (``GraphOptimizationLevel.ORT_DISABLE_ALL`` ... ``ORT_ENABLE_ALL``)."""
_state: dict[str, Any] = {"registered": False, "backend": "auto", "warned": False}


def set_backend(name: str) -> None:
    """Choose the GaussPSF backend for sessions made after this call: ``auto``, ``native``, ``torch``, ``host``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown GaussPSF backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    _state["backend"] = name


def get_backend() -> str:
    """The backend in use, ``auto`` resolved: ``native`` if the op library is usable (it is built now if
    needed), else ``torch`` if importable (warning once with the reason and the fix), else ``host``.

    Raises:
        RuntimeUnavailableError: ``native`` was asked for explicitly and cannot be built or loaded.
    """
    name = _state["backend"]
    if name == "native":
        from export.errors import RuntimeUnavailableError
        from export.ort_native import native_status

        path, reason = native_status()
        if path is None:
            raise RuntimeUnavailableError(f"the native GaussPSF op is not available: {reason}",
                                          "--psf-backend auto (a Python op, slower)")
        return "native"
    if name != "auto":
        return name
    from export.ort_native import native_status

    path, reason = native_status()
    if path is not None:
        return "native"
    if not _state["warned"]:
        _state["warned"] = True
        log.warning("GaussPSF runs in onnxruntime as a Python op (many times slower than the native op): %s", reason)
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
    backend = get_backend()
    if backend == "host":
        from export.psf_ext import host_gauss_psf

        return host_gauss_psf(image, sigma, radius)
    if backend == "native":
        from export.ort_native import cpu_gauss_psf

        return cpu_gauss_psf(image, sigma, radius, threads=os.cpu_count() or 1)
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


def session_options(threads: int | None = None, custom_ops: bool = True, *, optimization: str = "all",
                    backend: str | None = None) -> Any:
    """``onnxruntime.SessionOptions`` for our graphs.

    Args:
        threads: intra-op threads (``None``: onnxruntime's default, one per physical core).
        custom_ops: register the GaussPSF op (the physics graph needs it).
        optimization: graph optimisation level, one of :data:`OPTIMIZATION_LEVELS` (default ``all``).
        backend: the GaussPSF backend (default: the one set with :func:`set_backend`; ``auto`` resolved by
            :func:`get_backend`). ``native`` registers ``libgausspsf_ort.so``; the others register
            onnxruntime-extensions with the Python op.

    Returns:
        The options; ``.daif_psf_backend`` (an attribute set here) says which backend was registered.

    Raises:
        ValueError: unknown optimisation level or backend; ImportError: onnxruntime-extensions is missing for
        a Python-op backend; RuntimeUnavailableError: ``native`` asked for and unavailable.
    """
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"unknown graph optimisation level {optimization!r}; choose one of "
                         f"{', '.join(OPTIMIZATION_LEVELS)}")
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    so.graph_optimization_level = levels[optimization]
    so.log_severity_level = 3
    chosen = None
    if custom_ops:
        if backend is not None:
            set_backend(backend)
        chosen = get_backend()
        if chosen == "native":
            from export.ort_native import native_library

            so.register_custom_ops_library(str(native_library()))
        else:
            so.register_custom_ops_library(library_path())
    try:
        so.daif_psf_backend = chosen
    except AttributeError:  # pybind objects without a __dict__: the caller asks get_backend() instead
        pass
    return so
