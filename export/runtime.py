"""Runners for exported models, with the interface of ``model.runners`` (``Runner`` protocol).

* :class:`OnnxRunner` - an ONNX file written by ``python -m export onnx`` in onnxruntime (CPU by default).
  The physics graph's ``GaussPSF`` node runs as a native C++ custom op (``libgausspsf_ort.so``, built on first
  use, :mod:`export.ort_native`), or, where that cannot be built, as an onnxruntime-extensions Python op
  (:mod:`export.ort_ops`, with a warning saying why).
* :class:`TensorRTRunner` - an engine written by ``python -m export engine``, on the GPU it was built for.
  :class:`TensorRTEngine` holds the engine, its execution context, one CUDA stream, device buffers and pinned
  host buffers (grown when a larger stack arrives, reused otherwise); inputs are copied in and outputs out
  asynchronously on that stream (:mod:`export.cuda_backend`: cuda-python, or pycuda).

Both take ``images (S, H, W, 3)`` float32 in [0, 1] and ``focus_m (S,)`` metres and return a
:class:`model.runners.Prediction` (metric depth, AIF, confidence). A network-only export gets its confidence
from :func:`model.confidence.physics_check` in PyTorch when ``with_confidence`` (and PyTorch is installed).

Every refusal says why and what works instead: a file without our metadata, an engine built for another
TensorRT version or GPU, a missing plugin library, no GPU or no TensorRT.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from export.errors import (
    EngineMismatchError,
    ExportRuntimeError,
    PluginMissingError,
    RuntimeUnavailableError,
)
from export.metadata import EngineInfo, OnnxModelInfo, read_engine_info, read_onnx_info
from model.psf_window import DEFAULT_MAX_RADIUS_PX
from model.runners import Prediction, check_stack_input

__all__ = [
    "PLUGIN_ENV",
    "OnnxRunner",
    "TensorRTEngine",
    "TensorRTRunner",
    "import_tensorrt",
    "find_plugin_library",
    "load_plugin_library",
    "prediction_from_outputs",
    "onnx_fallback_for",
    "rank_auto_candidates",
]

log = logging.getLogger(__name__)
PLUGIN_ENV = "DAIF_GAUSSPSF_PLUGIN"


# --------------------------------------------------------------------------------------------------
# Shared


def prediction_from_outputs(outputs: Mapping[str, np.ndarray], images: np.ndarray, focus_m: np.ndarray,
                            lens: Any, with_confidence: bool, max_psf_radius: int | None = DEFAULT_MAX_RADIUS_PX) -> Prediction:
    """Turn graph outputs (``aif (1,3,H,W)``, ``depth_m (1,1,H,W)`` and, for the physics graph,
    ``confidence``, ``residual``, ``rendered (1,S,3,H,W)``) into a :class:`Prediction`.

    Without confidence outputs and with ``with_confidence``, the physics check runs in PyTorch on the CPU
    (``images (S,H,W,3)``, ``focus_m (S,)``); if PyTorch is missing the confidence is ``None``.
    """
    aif = np.ascontiguousarray(outputs["aif"][0].transpose(1, 2, 0), dtype=np.float32)
    depth = np.ascontiguousarray(outputs["depth_m"][0, 0], dtype=np.float32)
    conf = res = rendered = None
    if "confidence" in outputs:
        conf = np.ascontiguousarray(outputs["confidence"][0, 0], dtype=np.float32)
        res = np.ascontiguousarray(outputs["residual"][0, 0], dtype=np.float32)
        rendered = np.ascontiguousarray(outputs["rendered"][0].transpose(0, 2, 3, 1), dtype=np.float32)
    elif with_confidence:
        try:
            import torch

            from model.confidence import physics_check
        except ImportError:
            log.warning("no confidence: the model has no physics graph and PyTorch is not installed")
        else:
            x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).unsqueeze(0)
            f = torch.from_numpy(np.asarray(focus_m, np.float32)).unsqueeze(0)
            with torch.inference_mode():
                chk = physics_check(x, f, torch.from_numpy(outputs["aif"]), torch.from_numpy(outputs["depth_m"]), lens,
                                    max_radius=max_psf_radius)
            conf = chk.confidence[0, 0].numpy()
            res = chk.residual[0, 0].numpy()
            rendered = chk.rendered[0].permute(0, 2, 3, 1).numpy()
    return Prediction(depth_m=depth, aif=aif, confidence=conf, residual=res, rendered=rendered)


def onnx_fallback_for(onnx_path: str | os.PathLike[str] | None) -> str:
    """The onnxruntime command that runs the model an engine was built from (the fallback off the Jetson)."""
    if not onnx_path:
        return "export the checkpoint to ONNX (python -m export onnx) and use --runtime onnxruntime"
    p = str(onnx_path)
    if p.endswith(".trt.onnx"):
        p = p[: -len(".trt.onnx")] + ".onnx"
    return f"--runtime onnxruntime --model {p}"


# --------------------------------------------------------------------------------------------------
# runtime "auto": fastest first

# Measured by benchmarks/bench_onnx.py (docs/export.md, "Performance on a CPU"): whole graph onnxruntime with the
# native GaussPSF op against PyTorch eager on the same CPU, 5x240x320 and 5x480x640, 1 and 2 threads.
_ORT_WHOLE_SPEEDUP = "2.6-3.3x"
_ORT_NET_SPEEDUP = "1.9-2.5x"


def _recorded_checkpoint_sha(info: OnnxModelInfo) -> str | None:
    import json

    try:
        record = json.loads(info.props.get("checkpoint", "{}"))
    except ValueError:
        return None
    sha = record.get("sha256") if isinstance(record, dict) else None
    return str(sha) if sha else None


def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def rank_auto_candidates(candidates: list[tuple[str, Path]], torch_device: str | None = None) -> dict[tuple[str, Path], str]:
    """Reorder ``runtime auto``'s candidates (``model.runners.auto_candidates``) fastest first, in place, and
    return why each ranks where it does (``{(kind, path): reason}``); the first one that loads is used.

    Order: a TensorRT engine (GPU; skipped by the caller where it cannot run); PyTorch on a CUDA GPU; onnxruntime
    with the physics graph and the native GaussPSF op (measured faster than PyTorch eager on the CPU); the
    network-only ONNX graph (network in onnxruntime, physics check in PyTorch); PyTorch eager on the CPU;
    onnxruntime with GaussPSF as a Python op (slower than PyTorch). An ONNX file or engine beside the checkpoint
    is trusted only if its recorded checkpoint SHA-256 equals the checkpoint's (else it goes last: it may be
    a stale export of another model). Files whose metadata cannot be read keep their place among the
    onnxruntime candidates (loading them gives the error). ``torch_device``: the PyTorch runner's device
    (``None``: CUDA when available).
    """
    from export.metadata import sha256_file

    ckpt_sha: str | None = None
    for kind, path in candidates:
        if kind == "torch" and path.is_file():
            try:
                ckpt_sha = sha256_file(path)
            except OSError:
                ckpt_sha = None
            break
    cuda = torch_device != "cpu" and (str(torch_device or "").startswith("cuda") or _torch_has_cuda())
    native: tuple[Path | None, str] | None = None
    scored: list[tuple[float, int, tuple[str, Path], str]] = []
    for i, (kind, path) in enumerate(candidates):
        score: float
        if kind == "tensorrt":
            score, why = 0, "a TensorRT engine runs the whole graph on the GPU (used where the engine fits this GPU)"
        elif kind == "torch":
            score, why = ((1, "PyTorch on the CUDA GPU") if cuda else
                          (4, "PyTorch eager on the CPU (no faster runtime found for this model)"))
        else:
            try:
                info = read_onnx_info(path)
            except Exception as e:  # noqa: BLE001 - ranked, and loading it will give the real error
                scored.append((2.5, i, (kind, path), f"its metadata could not be read ({e})"))
                continue
            recorded = _recorded_checkpoint_sha(info)
            if ckpt_sha is not None and recorded != ckpt_sha:
                scored.append((6, i, (kind, path), "not exported from this checkpoint (its recorded SHA-256 differs): "
                                                   "re-export it with python -m export onnx"))
                continue
            if info.has_confidence:
                if native is None:
                    from export.ort_native import native_status

                    native = native_status()
                if native[0] is not None:
                    score, why = 2, (f"onnxruntime on the CPU with the native GaussPSF op: the whole graph measured "
                                     f"{_ORT_WHOLE_SPEEDUP} faster than PyTorch eager (benchmarks/bench_onnx.py)")
                else:
                    score, why = 5, (f"onnxruntime would run GaussPSF as a Python op, slower than PyTorch "
                                     f"({native[1].splitlines()[0]})")
            else:
                score, why = 3, (f"onnxruntime runs the network ({_ORT_NET_SPEEDUP} faster than PyTorch eager), the "
                                 "physics check runs in PyTorch")
        scored.append((score, i, (kind, path), why))
    scored.sort(key=lambda t: (t[0], t[1]))
    candidates[:] = [c for _, _, c, _ in scored]
    return {c: why for _, _, c, why in scored}


# --------------------------------------------------------------------------------------------------
# onnxruntime


class OnnxRunner:
    """onnxruntime runner for files written by ``python -m export onnx``.

    Args:
        model: the ``.onnx`` file (the onnxruntime flavour for the physics graph).
        with_confidence: return a confidence map (from the graph, or from PyTorch for a network-only file).
        threads: intra-op threads (``None``: onnxruntime's default, one per physical core).
        providers: onnxruntime execution providers (default: CPU).
        psf_backend: the GaussPSF op's backend (``auto``/``native``/``torch``/``host``, see :mod:`export.ort_ops`).
        max_psf_radius: PSF window cap of the PyTorch physics check for network-only files.
        optimization: onnxruntime graph optimisation level (``disable``/``basic``/``extended``/``all``; default
            ``all``, the fastest measured by ``benchmarks/bench_onnx.py``).

    Raises:
        ValueError: no model given; MetadataError: a file without our metadata or the TensorRT flavour;
        RuntimeUnavailableError: onnxruntime (or onnxruntime-extensions for the physics graph) missing.
    """

    name = "onnxruntime"

    def __init__(self, model: str | os.PathLike[str] | None, with_confidence: bool = True, *,
                 threads: int | None = None, providers: Sequence[str] | None = None, psf_backend: str = "auto",
                 max_psf_radius: int | None = DEFAULT_MAX_RADIUS_PX, optimization: str = "all") -> None:
        if model is None:
            raise ExportRuntimeError("the onnxruntime runtime needs an ONNX file: --model daifnet.onnx",
                                     "make one with `python -m export onnx --out daifnet.onnx`, or use --runtime torch")
        self.path = Path(model)
        if self.path.suffix.lower() in (".engine", ".plan"):
            raise ExportRuntimeError(f"{self.path}: a TensorRT engine cannot run in onnxruntime",
                                     f"--runtime tensorrt --model {self.path}")
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailableError("onnxruntime is not installed (pip install onnxruntime)",
                                          "--runtime torch with the checkpoint") from None
        self.info: OnnxModelInfo = read_onnx_info(self.path)
        if self.info.target == "tensorrt":
            sibling = str(self.path)[: -len(".trt.onnx")] + ".onnx" if str(self.path).endswith(".trt.onnx") else None
            raise ExportRuntimeError(
                f"{self.path} is the TensorRT flavour of the physics graph (GaussPSF as a TensorRT plugin node); "
                "onnxruntime cannot run it",
                f"the onnxruntime flavour{' ' + sibling if sibling else ''} (python -m export onnx --target both), "
                f"or build an engine from this file: python -m export engine --onnx {self.path}")
        from export import ort_ops

        ort_ops.set_backend(psf_backend)
        so = ort_ops.session_options(threads, custom_ops=self.info.has_confidence, optimization=optimization)
        self.psf_backend: str | None = ort_ops.get_backend() if self.info.has_confidence else None
        self.threads = threads
        self.optimization = optimization
        self.session = ort.InferenceSession(str(self.path), so, providers=list(providers or ["CPUExecutionProvider"]))
        names = tuple(i.name for i in self.session.get_inputs())
        if names != ("images", "focus_m"):
            raise ExportRuntimeError(f"{self.path}: inputs {names}, expected ('images', 'focus_m')",
                                     "re-export with `python -m export onnx`")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.lens = self.info.lens
        self.focus_m = list(self.info.focus_m)
        self.working_range_m = self.info.working_range_m
        self.with_confidence = with_confidence
        self.max_psf_radius = max_psf_radius

    def run(self, images: np.ndarray, focus_m: np.ndarray) -> dict[str, np.ndarray]:
        """Raw graph outputs for ``images (1, S, 3, H, W)`` float32 and ``focus_m (1, S)`` float32."""
        outs = self.session.run(None, {"images": images, "focus_m": focus_m})
        return dict(zip(self.output_names, outs))

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction:
        """Predict depth, AIF and confidence for one stack ``(S, H, W, 3)`` taken at ``focus_m`` metres."""
        arr, fm = check_stack_input(images, focus_m)
        s, h, w = arr.shape[:3]
        self.info.check_input_shape(s, h, w, source="stack")
        x = np.ascontiguousarray(arr.transpose(0, 3, 1, 2)[None])
        outs = self.run(x, fm[None])
        return prediction_from_outputs(outs, arr, fm, self.lens, self.with_confidence, self.max_psf_radius)


# --------------------------------------------------------------------------------------------------
# TensorRT


def import_tensorrt() -> Any:
    """``import tensorrt``; raises :class:`RuntimeUnavailableError` naming the install and the fallback."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        lean = ""
        try:
            import tensorrt_lean  # type: ignore[import-not-found]  # noqa: F401

            lean = (" (only the TensorRT lean runtime `tensorrt_lean` is installed; it runs version-compatible "
                    "engines only and cannot build)")
        except ImportError:
            pass
        raise RuntimeUnavailableError(
            f"TensorRT's Python package `tensorrt` is not installed{lean}; on a Jetson it comes with JetPack "
            "(sudo apt install python3-libnvinfer), on a PC with `pip install tensorrt`",
            "run the ONNX file: --runtime onnxruntime --model MODEL.onnx") from None
    return tensorrt


def _trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def find_plugin_library(explicit: str | os.PathLike[str] | None = None, recorded: str | None = None,
                        trt_major: int = 10) -> Path | None:
    """The GaussPSF plugin library to load, or ``None``.

    Order: ``explicit``; ``$DAIF_GAUSSPSF_PLUGIN``; the path recorded when the engine was built; the newest
    build in the :mod:`export.psf_ext` cache (``libgausspsf_trt8.so`` for TensorRT 8).
    """
    for candidate in (explicit, os.environ.get(PLUGIN_ENV), recorded):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
        if candidate and candidate == explicit:
            raise PluginMissingError(f"{candidate}: plugin library not found",
                                     "build it with `python -m export selftest` or "
                                     "`python -c 'from export.psf_ext import build_plugin; print(build_plugin(cuda_archs=\"87\"))'`")
    from export.psf_ext import PLUGIN_LIBRARY, PLUGIN_LIBRARY_TRT8, cache_root

    name = PLUGIN_LIBRARY if trt_major >= 10 else PLUGIN_LIBRARY_TRT8
    root = cache_root()
    found = sorted(root.glob(f"*/{name}"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    return found[0] if found else None


def load_plugin_library(trt: Any, path: str | os.PathLike[str]) -> Any:
    """Load the plugin library into TensorRT's plugin registry and return the ``GaussPSF`` v1 creator.

    TensorRT 10 loads it with ``IPluginRegistry.load_library``; TensorRT 8 (JetPack 5) with
    ``ctypes.CDLL(RTLD_GLOBAL)`` (the library registers its creator when loaded).
    """
    from export.psf_ext import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

    registry = trt.get_plugin_registry()
    fix = "rebuild it on this device: python -m export selftest (or export.psf_ext.build_plugin)"
    if hasattr(registry, "load_library"):
        handle = registry.load_library(str(path))
        if handle is None:
            raise PluginMissingError(f"TensorRT could not load the plugin library {path}", fix)
    else:
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise PluginMissingError(f"cannot load the plugin library {path}: {e}", fix) from None
    getter = getattr(registry, "get_creator", None) or getattr(registry, "get_plugin_creator")
    creator = getter(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    if creator is None:
        raise PluginMissingError(f"{path} was loaded but TensorRT has no creator {PLUGIN_NAME} v{PLUGIN_VERSION}", fix)
    return creator


def make_trt_logger(trt: Any, verbose: bool = False) -> Any:
    """A ``trt.ILogger`` that forwards to :mod:`logging` and keeps the error messages (``.errors``)."""
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif level == severity.WARNING:
                log.warning("TensorRT: %s", msg)
            elif verbose:
                log.info("TensorRT: %s", msg)

    return _Logger()


class TensorRTEngine:
    """A deserialized engine ready to run: execution context, stream, device and pinned host buffers.

    Args:
        path: the engine file (its metadata file beside it is required).
        plugin: the GaussPSF plugin library (default: :func:`find_plugin_library`).
        trt: the ``tensorrt`` module (default: imported), injectable for tests.
        cuda: a :class:`export.cuda_backend.CudaBackend` (default: :func:`export.cuda_backend.open_cuda`).
        cuda_backend: which backend ``open_cuda`` picks (``auto``, ``cuda-python``, ``pycuda``).

    Raises:
        MetadataError, EngineMismatchError, PluginMissingError, RuntimeUnavailableError, CudaUnavailableError
        (each with the fallback), ``EngineBuildError``-style ``ExportRuntimeError`` if deserialization fails.
    """

    def __init__(self, path: str | os.PathLike[str], *, plugin: str | os.PathLike[str] | None = None,
                 trt: Any = None, cuda: Any = None, cuda_backend: str = "auto") -> None:
        self.path = Path(path)
        self.info: EngineInfo = read_engine_info(self.path)
        fallback = onnx_fallback_for(self.info.onnx_path)
        rebuild = f"rebuild it here: python -m export engine --onnx {self.info.onnx_path or 'MODEL.onnx'} --out {self.path}"
        if trt is None:
            try:
                trt = import_tensorrt()
            except RuntimeUnavailableError as e:
                raise RuntimeUnavailableError(str(e).split(". What works")[0], fallback) from None
        self.trt = trt
        here = str(self.trt.__version__)
        if here != self.info.tensorrt_version:
            raise EngineMismatchError(
                f"{self.path} was built with TensorRT {self.info.tensorrt_version}, this machine has TensorRT {here}; "
                f"engines only load in the TensorRT version that built them ({rebuild})", fallback)
        self._own_cuda = cuda is None
        if cuda is None:
            from export.cuda_backend import open_cuda

            cuda = open_cuda(cuda_backend)
        self.cuda = cuda
        self._buffers: dict[str, tuple[int, int]] = {}
        self._pinned: dict[str, np.ndarray] = {}
        self._stream: int | None = None
        self._closed = False
        try:
            device = cuda.device_info()
            if device.compute_capability != self.info.compute_capability or device.name != self.info.gpu_name:
                raise EngineMismatchError(
                    f"{self.path} was built for {self.info.gpu_name} (compute capability "
                    f"{self.info.compute_capability}), this GPU is {device.name} ({device.compute_capability}); "
                    f"engines are specific to the GPU model ({rebuild})", fallback)
            self.device = device
            self.plugin_path: Path | None = None
            if self.info.plugin_needed:
                found = find_plugin_library(plugin, self.info.plugin_library, _trt_major(self.trt))
                if found is None:
                    raise PluginMissingError(
                        f"{self.path} contains the GaussPSF plugin but its library was not found (looked at "
                        f"--plugin, ${PLUGIN_ENV}, {self.info.plugin_library} and the build cache); build it with "
                        "`python -m export selftest` or point $DAIF_GAUSSPSF_PLUGIN at libgausspsf_trt.so", fallback)
                load_plugin_library(self.trt, found)
                self.plugin_path = found
            self.logger = make_trt_logger(self.trt)
            self.runtime = self.trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                detail = "; ".join(self.logger.errors[-3:]) or "no message"
                raise EngineMismatchError(f"TensorRT could not deserialize {self.path}: {detail} ({rebuild})", fallback)
            self.context = self.engine.create_execution_context()
            mode_in = self.trt.TensorIOMode.INPUT
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode_in]
            self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode_in]
            self.dtypes = {n: np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
            self._stream = cuda.create_stream()
        except BaseException:
            self.close()
            raise

    def _device(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, 0))
        if nbytes > cap:
            if cap:
                self.cuda.free(ptr)
            ptr, cap = self.cuda.alloc(nbytes), nbytes
            self._buffers[name] = (ptr, cap)
        return ptr

    def _host(self, name: str, nbytes: int) -> np.ndarray:
        buf = self._pinned.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                self.cuda.free_pinned(buf)
            buf = self.cuda.alloc_pinned(nbytes)
            self._pinned[name] = buf
        return buf[:nbytes]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``inputs``: ``{name: array}`` with the engine's input names; returns ``{output: array}``.

        Raises ``ValueError`` when a shape lies outside the engine's optimisation profile.
        """
        if self._closed:
            raise RuntimeError("this engine has been closed")
        stream = self._stream
        for name in self.input_names:
            if name not in inputs:
                raise ValueError(f"missing input {name!r} (engine inputs: {', '.join(self.input_names)})")
            arr = np.ascontiguousarray(inputs[name], dtype=self.dtypes[name])
            if not self.context.set_input_shape(name, tuple(int(v) for v in arr.shape)):
                prof = self.info.shapes.get(name, {})
                raise ValueError(f"input {name} of shape {tuple(arr.shape)} is outside the engine's profile "
                                 f"(min {prof.get('min')}, max {prof.get('max')}); rebuild with python -m export engine "
                                 "--min-size/--max-size/--min-stack/--max-stack")
            host = self._host(name, arr.nbytes)
            host[:] = arr.reshape(-1).view(np.uint8)
            ptr = self._device(name, arr.nbytes)
            self.cuda.htod_async(ptr, host, stream)
            self.context.set_tensor_address(name, ptr)
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.output_names:
            shape = tuple(int(v) for v in self.context.get_tensor_shape(name))
            if any(v < 0 for v in shape):
                raise RuntimeError(f"TensorRT did not resolve the shape of output {name}: {shape}")
            shapes[name] = shape
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            self.context.set_tensor_address(name, self._device(name, nbytes))
        if not self.context.execute_async_v3(stream):
            detail = "; ".join(self.logger.errors[-3:]) or "no message"
            raise RuntimeError(f"TensorRT execution failed: {detail}")
        hosts = {}
        for name, shape in shapes.items():
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            hosts[name] = self._host(name, nbytes)
            self.cuda.dtoh_async(hosts[name], self._buffers[name][0], stream)
        self.cuda.synchronize(stream)
        return {name: hosts[name].view(self.dtypes[name]).reshape(shape).copy() for name, shape in shapes.items()}

    def close(self) -> None:
        """Free buffers and the stream (and the CUDA backend if this object opened it). Idempotent."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for ptr, _cap in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        for buf in self._pinned.values():
            self.cuda.free_pinned(buf)
        self._pinned.clear()
        if self._stream is not None:
            self.cuda.destroy_stream(self._stream)
            self._stream = None
        for attr in ("context", "engine", "runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        if self._own_cuda:
            self.cuda.close()

    def __enter__(self) -> "TensorRTEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class TensorRTRunner:
    """TensorRT runner for engines written by ``python -m export engine``: same interface as the others.

    Args:
        model: the ``.engine`` file (its ``.engine.json`` metadata beside it).
        with_confidence: return a confidence map (from the engine's physics graph, or PyTorch otherwise).
        plugin, trt, cuda, cuda_backend: see :class:`TensorRTEngine`.
    """

    name = "tensorrt"

    def __init__(self, model: str | os.PathLike[str] | None, with_confidence: bool = True, *,
                 plugin: str | os.PathLike[str] | None = None, trt: Any = None, cuda: Any = None,
                 cuda_backend: str = "auto", max_psf_radius: int | None = DEFAULT_MAX_RADIUS_PX) -> None:
        if model is None:
            raise ExportRuntimeError("the tensorrt runtime needs an engine file: --model daifnet.engine",
                                     "build one on the Jetson with `python -m export engine --onnx daifnet.trt.onnx`")
        if Path(model).suffix.lower() == ".onnx":
            raise ExportRuntimeError(f"{model}: the tensorrt runtime runs engines, not ONNX files",
                                     f"build an engine: python -m export engine --onnx {model}; "
                                     f"or --runtime onnxruntime --model {model}")
        self.engine = TensorRTEngine(model, plugin=plugin, trt=trt, cuda=cuda, cuda_backend=cuda_backend)
        self.info = self.engine.info.onnx
        self.lens = self.info.lens
        self.focus_m = list(self.info.focus_m)
        self.working_range_m = self.info.working_range_m
        self.with_confidence = with_confidence
        self.max_psf_radius = max_psf_radius

    def predict(self, images: np.ndarray, focus_m: Sequence[float]) -> Prediction:
        """Predict depth, AIF and confidence for one stack ``(S, H, W, 3)`` taken at ``focus_m`` metres."""
        arr, fm = check_stack_input(images, focus_m)
        s, h, w = arr.shape[:3]
        self.info.check_input_shape(s, h, w, source="stack")
        x = np.ascontiguousarray(arr.transpose(0, 3, 1, 2)[None])
        outs = self.engine.run({"images": x, "focus_m": fm[None]})
        return prediction_from_outputs(outs, arr, fm, self.lens, self.with_confidence, self.max_psf_radius)

    def close(self) -> None:
        """Release the engine's GPU resources. Idempotent."""
        self.engine.close()
