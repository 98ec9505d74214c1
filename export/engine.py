"""ONNX -> TensorRT engine on the device that will run it: :func:`onnx_to_engine`, driven by :class:`EngineConfig`.

What a build does, in order (everything that can be checked without TensorRT is checked first):

1. validate the options against :data:`export.targets.TARGETS` and the ONNX file's metadata (input sizes,
   optimisation-profile shapes, INT8 calibration data);
2. import ``tensorrt`` (the full package with the builder; JetPack ships it), open CUDA and read the GPU;
3. for the physics graph: convert the onnxruntime flavour to the TensorRT flavour if needed and load the
   GaussPSF plugin library into the plugin registry;
4. parse the ONNX file, configure precision (``fp16`` by default; ``int8`` with an entropy calibrator fed from
   ``focal-stack/1`` folders and a calibration cache), workspace, one optimisation profile and a timing cache;
5. build, write the engine atomically with ``X.engine.json`` beside it (TensorRT version, GPU, precision, lens,
   focus distances, shapes, plugin) and save the timing cache.

:func:`trtexec_command` gives the equivalent ``trtexec`` command line (printed by the CLI).

The code is written against the TensorRT 10 Python API (JetPack 6) and keeps to what TensorRT 8.5 (JetPack 5)
also has. TensorRT 11 dropped the weakly-typed ``FP16``/``INT8`` builder flags; there only ``fp32`` builds.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from export.errors import EngineBuildError, ExportRuntimeError, PluginMissingError, RuntimeUnavailableError
from export.metadata import ENGINE_FORMAT, OnnxModelInfo, package_version, read_onnx_info, sha256_file, utc_now, write_sidecar
from export.targets import TARGETS, check_choice, to_tensorrt_flavour

__all__ = [
    "EngineConfig",
    "EngineResult",
    "engine_shapes",
    "trtexec_command",
    "CalibrationStacks",
    "make_calibrator",
    "import_tensorrt_builder",
    "onnx_to_engine",
]

log = logging.getLogger(__name__)


def _default_engine_path(onnx_path: Path) -> Path:
    name = onnx_path.name
    for suffix in (".trt.onnx", ".onnx"):
        if name.endswith(suffix):
            return onnx_path.with_name(name[: -len(suffix)] + ".engine")
    return onnx_path.with_suffix(".engine")


@dataclass
class EngineConfig:
    """Options of ``python -m export engine``.

    Attributes:
        onnx: the ONNX file (either flavour of the physics graph, or the network-only graph).
        out: the engine (``.engine``/``.plan``); default: beside the ONNX file.
        precision: ``fp32``, ``fp16`` (default) or ``int8``.
        workspace_mb: builder workspace limit, MiB.
        calib: folder of ``focal-stack/1`` stacks for INT8 calibration (searched recursively).
        calib_cache: INT8 calibration cache file (read if present, written after calibrating);
            default ``<engine>.calib``.
        calib_stacks: at most this many stacks are used for calibration.
        timing_cache: TensorRT timing cache file (read if present, updated after the build); default
            ``timing.cache`` beside the engine.
        plugin: the GaussPSF plugin library (default: ``$DAIF_GAUSSPSF_PLUGIN`` or the build cache).
        min_size, opt_size, max_size: ``(W, H)`` of the optimisation profile for a dynamic-size ONNX file
            (default: the size it was exported at, for all three).
        min_stack, opt_stack, max_stack: frames, for a dynamic-stack ONNX file (default: the export's).
        cuda_backend: ``auto``, ``cuda-python`` or ``pycuda``.
        verbose: log TensorRT's info messages.
    """

    onnx: Path
    out: Path | None = None
    precision: str = "fp16"
    workspace_mb: int = 1024
    calib: Path | None = None
    calib_cache: Path | None = None
    calib_stacks: int = 64
    timing_cache: Path | None = None
    plugin: Path | None = None
    min_size: tuple[int, int] | None = None
    opt_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None
    min_stack: int | None = None
    opt_stack: int | None = None
    max_stack: int | None = None
    cuda_backend: str = "auto"
    verbose: bool = False

    @property
    def engine_path(self) -> Path:
        return Path(self.out) if self.out is not None else _default_engine_path(Path(self.onnx))

    @property
    def calib_cache_path(self) -> Path:
        return Path(self.calib_cache) if self.calib_cache is not None else self.engine_path.with_name(
            self.engine_path.name + ".calib")

    @property
    def timing_cache_path(self) -> Path:
        return Path(self.timing_cache) if self.timing_cache is not None else self.engine_path.with_name("timing.cache")

    def validate(self) -> None:
        """Raise ``ValueError``/``FileNotFoundError`` for options that cannot work, before any work."""
        from export.cuda_backend import CUDA_BACKENDS

        target = TARGETS["engine"]
        check_choice("precision", self.precision, target.precisions)
        check_choice("CUDA backend", self.cuda_backend, CUDA_BACKENDS)
        onnx_path = Path(self.onnx)
        if onnx_path.suffix.lower() != ".onnx":
            raise ValueError(f"{onnx_path}: expected an .onnx file (make one with python -m export onnx)")
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{onnx_path}: ONNX file not found (make one with python -m export onnx)")
        if self.engine_path.suffix.lower() not in (".engine", ".plan"):
            raise ValueError(f"{self.engine_path}: the engine file name must end in .engine or .plan")
        if int(self.workspace_mb) < 16:
            raise ValueError(f"workspace must be at least 16 MiB, got {self.workspace_mb}")
        if self.precision == "int8":
            has_cache = self.calib_cache_path.is_file()
            if self.calib is None and not has_cache:
                raise ValueError("int8 needs calibration data: --calib FOLDER of focal-stack/1 stacks (or an existing "
                                 f"--calib-cache); or build fp16, which needs none")
            if self.calib is not None and not Path(self.calib).is_dir():
                raise FileNotFoundError(f"{self.calib}: calibration folder not found")
        if int(self.calib_stacks) < 1:
            raise ValueError(f"calib_stacks must be >= 1, got {self.calib_stacks}")
        if self.plugin is not None and not Path(self.plugin).is_file():
            raise FileNotFoundError(f"{self.plugin}: plugin library not found (build it: python -m export selftest)")
        for name in ("min_size", "opt_size", "max_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) < 8):
                raise ValueError(f"{name} must be WxH with both at least 8 pixels, got {size}")
        for name in ("min_stack", "opt_stack", "max_stack"):
            s = getattr(self, name)
            if s is not None and s < 2:
                raise ValueError(f"{name} must be at least 2 frames, got {s}")


@dataclass
class EngineResult:
    """What :func:`onnx_to_engine` wrote: the engine, its metadata file, the timing cache, the trtexec line."""

    engine: Path
    metadata: Path
    timing_cache: Path
    trtexec: str
    build_s: float
    calibration: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Shapes and the trtexec line


def engine_shapes(info: OnnxModelInfo, config: EngineConfig) -> dict[str, dict[str, list[int]]]:
    """The optimisation profile ``{input: {"min", "opt", "max": shape}}`` for ``config`` on this ONNX file.

    Fixed axes of the ONNX file must not be overridden (the error names the re-export that frees them).
    """
    ew, eh = info.example_image_size
    sizes = {}
    for key, value in (("min", config.min_size), ("opt", config.opt_size), ("max", config.max_size)):
        if info.image_size is not None:
            if value is not None and tuple(value) != tuple(info.image_size):
                raise ValueError(f"{info.path} was exported for {info.image_size[0]}x{info.image_size[1]} only; "
                                 "re-export with `python -m export onnx --dynamic-size` to build a size range")
            sizes[key] = tuple(info.image_size)
        else:
            sizes[key] = tuple(value) if value is not None else None
    if info.image_size is None:
        opt = sizes["opt"] or (ew, eh)
        sizes = {"min": sizes["min"] or opt, "opt": opt, "max": sizes["max"] or opt}
    stacks = {}
    for key, value in (("min", config.min_stack), ("opt", config.opt_stack), ("max", config.max_stack)):
        if info.stack_size is not None:
            if value is not None and value != info.stack_size:
                raise ValueError(f"{info.path} was exported for {info.stack_size} frames only; re-export with "
                                 "`python -m export onnx --dynamic-stack` to build a range of stack sizes")
            stacks[key] = info.stack_size
        else:
            stacks[key] = value
    if info.stack_size is None:
        opt_s = stacks["opt"] or info.example_stack_size
        stacks = {"min": stacks["min"] or opt_s, "opt": opt_s, "max": stacks["max"] or opt_s}
    m = info.size_multiple
    for dim in (0, 1):
        lo, mid, hi = sizes["min"][dim], sizes["opt"][dim], sizes["max"][dim]
        if not lo <= mid <= hi:
            raise ValueError(f"profile sizes must satisfy min <= opt <= max, got {sizes}")
        if lo < m:
            raise ValueError(f"min size {sizes['min']} is below the network's minimum of {m} pixels")
    if not stacks["min"] <= stacks["opt"] <= stacks["max"]:
        raise ValueError(f"profile stack sizes must satisfy min <= opt <= max, got {stacks}")
    out: dict[str, dict[str, list[int]]] = {"images": {}, "focus_m": {}}
    for key in ("min", "opt", "max"):
        w, h = sizes[key]
        out["images"][key] = [1, int(stacks[key]), 3, int(h), int(w)]
        out["focus_m"][key] = [1, int(stacks[key])]
    return out


def _shape_arg(shapes: Mapping[str, Mapping[str, list[int]]], key: str) -> str:
    return ",".join(f"{name}:{'x'.join(str(v) for v in prof[key])}" for name, prof in shapes.items())


def trtexec_command(onnx_path: str | os.PathLike[str], config: EngineConfig, shapes: Mapping[str, Mapping[str, list[int]]],
                    *, dynamic: bool, plugin: str | os.PathLike[str] | None, trt_major: int = 10) -> str:
    """The ``trtexec`` command that builds the same engine (for users who prefer it, or to compare).

    ``trtexec`` cannot run a Python calibrator: for INT8 it reads the calibration cache this tool writes.
    TensorRT 8 (JetPack 5) loads plugins with ``--plugins``, TensorRT 10 with ``--dynamicPlugins``.
    """
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={config.engine_path}",
             f"--memPoolSize=workspace:{int(config.workspace_mb)}M", f"--timingCacheFile={config.timing_cache_path}"]
    if config.precision == "fp16":
        parts.append("--fp16")
    elif config.precision == "int8":
        parts += ["--int8", "--fp16", f"--calib={config.calib_cache_path}"]
    if dynamic:
        parts += [f"--minShapes={_shape_arg(shapes, 'min')}", f"--optShapes={_shape_arg(shapes, 'opt')}",
                  f"--maxShapes={_shape_arg(shapes, 'max')}"]
    if plugin is not None:
        parts.append(f"--plugins={plugin}" if trt_major < 10 else f"--dynamicPlugins={plugin}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# INT8 calibration


class CalibrationStacks:
    """INT8 calibration batches from ``focal-stack/1`` folders under ``root``, read one at a time.

    Each batch is ``{"images": (1, S, 3, H, W) float32, "focus_m": (1, S) float32}`` at the profile's ``opt``
    shape: frames nearest (in dioptres) to the model's focus distances, resized to ``(W, H)``.

    Raises ``ValueError`` when ``root`` holds no usable stack.
    """

    def __init__(self, root: str | os.PathLike[str], focus_m: list[float], size: tuple[int, int],
                 max_stacks: int = 64) -> None:
        from model.formats import find_stacks

        self.root = Path(root)
        self.focus_m = sorted(float(f) for f in focus_m)
        self.size = (int(size[0]), int(size[1]))
        folders = find_stacks(self.root)
        if not folders:
            raise ValueError(f"{self.root}: no focal-stack/1 folder (stack.json) found for INT8 calibration")
        self.folders = folders[: int(max_stacks)]

    def __len__(self) -> int:
        return len(self.folders)

    def load(self, folder: Path) -> dict[str, np.ndarray]:
        from export.onnx_export import reference_stack

        images, focus, _desc = reference_stack(None, self.focus_m, self.size, (0.1, 1e3), folder)
        return {"images": np.ascontiguousarray(images.transpose(0, 3, 1, 2)[None], np.float32),
                "focus_m": np.ascontiguousarray(focus[None], np.float32)}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for folder in self.folders:
            yield self.load(folder)


def make_calibrator(trt: Any, batches: Iterable[Mapping[str, np.ndarray]], cache_path: str | os.PathLike[str],
                    cuda: Any) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed from ``batches`` (one stack per batch) through device buffers.

    The calibration cache at ``cache_path`` is returned to TensorRT when it exists (no recalibration) and
    written atomically when TensorRT produces one. Call ``.close()`` after the build to free the buffers.
    """
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise ExportRuntimeError(f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (implicit INT8 "
                                 "calibration was removed)", "build with --precision fp16")
    from model.atomic import atomic_write_bytes

    cache = Path(cache_path)

    class StackCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._batches = iter(batches)
            self._device: dict[str, tuple[int, int]] = {}
            self._stream: int | None = None
            self.used = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str], *args: Any) -> list[int] | None:
            try:
                batch = next(self._batches)
            except StopIteration:
                return None
            pointers = []
            for name in names:
                if name not in batch:
                    raise KeyError(f"calibration batch has no input {name!r}")
                arr = np.ascontiguousarray(batch[name], np.float32)
                ptr, cap = self._device.get(name, (0, 0))
                if arr.nbytes > cap:
                    if cap:
                        cuda.free(ptr)
                    ptr, cap = cuda.alloc(arr.nbytes), arr.nbytes
                    self._device[name] = (ptr, cap)
                if self._stream is None:
                    self._stream = cuda.create_stream()
                cuda.htod_async(ptr, arr.reshape(-1).view(np.uint8), self._stream)
                cuda.synchronize(self._stream)
                pointers.append(int(ptr))
            self.used += 1
            return pointers

        def read_calibration_cache(self, *args: Any) -> bytes | None:
            if cache.is_file():
                log.info("INT8: using the calibration cache %s", cache)
                return cache.read_bytes()
            return None

        def write_calibration_cache(self, data: Any, *args: Any) -> None:
            atomic_write_bytes(cache, bytes(memoryview(data)))
            log.info("INT8: wrote the calibration cache %s", cache)

        def close(self) -> None:
            for ptr, _cap in self._device.values():
                cuda.free(ptr)
            self._device.clear()
            if self._stream is not None:
                cuda.destroy_stream(self._stream)
                self._stream = None

    return StackCalibrator()


# --------------------------------------------------------------------------------------------------
# Build


def import_tensorrt_builder() -> Any:
    """``import tensorrt`` and make sure it can build (has ``Builder`` and ``OnnxParser``)."""
    from export.runtime import import_tensorrt

    try:
        trt = import_tensorrt()
    except RuntimeUnavailableError as e:
        raise RuntimeUnavailableError(
            f"no TensorRT builder here: {e.args[0].split('. What works')[0]}",
            "build on the Jetson (JetPack includes TensorRT), or use the printed trtexec command there") from None
    if not (hasattr(trt, "Builder") and hasattr(trt, "OnnxParser")):
        raise RuntimeUnavailableError(f"this TensorRT ({trt.__version__}) has no Builder/OnnxParser (a runtime-only "
                                      "package)", "build on the Jetson, where JetPack's TensorRT can build")
    return trt


def _trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def onnx_to_engine(config: EngineConfig, *, trt: Any = None, cuda: Any = None) -> EngineResult:
    """Build a TensorRT engine from an exported ONNX file; see the module docstring for the steps.

    Args:
        config: the options (validated first).
        trt: the ``tensorrt`` module (default: imported; the tests pass a faithful fake).
        cuda: a :class:`export.cuda_backend.CudaBackend` (default: opened with ``config.cuda_backend``).

    Raises:
        ValueError / FileNotFoundError: bad options or an ONNX file without our metadata (before any work).
        RuntimeUnavailableError, CudaUnavailableError, PluginMissingError: missing builder, GPU or plugin.
        EngineBuildError: TensorRT could not parse or build (its messages included).
    """
    import onnx

    config.validate()
    onnx_path = Path(config.onnx)
    info = read_onnx_info(onnx_path)
    shapes = engine_shapes(info, config)
    dynamic = info.image_size is None or info.stack_size is None
    calib_data = None
    if config.precision == "int8" and config.calib is not None:
        w, h = shapes["images"]["opt"][4], shapes["images"]["opt"][3]
        calib_data = CalibrationStacks(config.calib, list(info.focus_m), (w, h), config.calib_stacks)
    trt = trt if trt is not None else import_tensorrt_builder()
    major = _trt_major(trt)
    flags_needed = {"fp16": ("FP16",), "int8": ("INT8", "FP16"), "fp32": ()}[config.precision]
    missing = [f for f in flags_needed if not hasattr(trt.BuilderFlag, f)]
    if missing:
        raise ExportRuntimeError(f"TensorRT {trt.__version__} has no {'/'.join(missing)} builder flag (weakly typed "
                                 "precision was removed in TensorRT 11)", "build with --precision fp32")
    own_cuda = cuda is None
    if cuda is None:
        from export.cuda_backend import open_cuda

        cuda = open_cuda(config.cuda_backend)
    notes: list[str] = []
    calibrator = None
    try:
        device = cuda.device_info()
        model = onnx.load(str(onnx_path))
        plugin_path: Path | None = None
        if info.graph == "physics":
            if info.target != "tensorrt":
                model = to_tensorrt_flavour(model)
                notes.append("converted the onnxruntime flavour's GaussPSF node to the TensorRT plugin node in memory")
            from export.runtime import find_plugin_library, load_plugin_library

            plugin_path = find_plugin_library(config.plugin, None, major)
            if plugin_path is None:
                raise PluginMissingError(
                    "the physics graph needs the GaussPSF TensorRT plugin and no library was found (--plugin, "
                    "$DAIF_GAUSSPSF_PLUGIN, build cache)",
                    "build it on this device first (python -m export selftest, or "
                    "export.psf_ext.build_plugin(cuda_archs='87')), or export the network alone "
                    "(python -m export onnx --graph net) and build from that")
        from export.runtime import make_trt_logger

        logger = make_trt_logger(trt, config.verbose)
        if hasattr(trt, "init_libnvinfer_plugins"):
            trt.init_libnvinfer_plugins(logger, "")
        if plugin_path is not None:
            load_plugin_library(trt, plugin_path)
        builder = trt.Builder(logger)
        flags = 0
        if major < 10 and hasattr(trt, "NetworkDefinitionCreationFlag"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model.SerializeToString(), str(onnx_path)):
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            hint = " (is the GaussPSF plugin loaded?)" if any("GaussPSF" in e for e in errors) else ""
            raise EngineBuildError(f"TensorRT could not parse {onnx_path}{hint}: " + "; ".join(errors or logger.errors))
        bc = builder.create_builder_config()
        bc.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_mb) << 20)
        for flag in flags_needed:
            bc.set_flag(getattr(trt.BuilderFlag, flag))
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            name = network.get_input(i).name
            if name not in shapes:
                raise EngineBuildError(f"{onnx_path}: unexpected network input {name!r}")
            prof = shapes[name]
            profile.set_shape(name, prof["min"], prof["opt"], prof["max"])
        bc.add_optimization_profile(profile)
        calibration: dict[str, Any] | None = None
        if config.precision == "int8":
            cache = config.calib_cache_path
            calibrator = make_calibrator(trt, calib_data if calib_data is not None else [], cache, cuda)
            bc.int8_calibrator = calibrator
            if hasattr(bc, "set_calibration_profile"):
                bc.set_calibration_profile(profile)
            calibration = {"cache": str(cache), "folder": str(config.calib) if config.calib else None,
                           "stacks_available": len(calib_data) if calib_data is not None else 0}
        tc_path = config.timing_cache_path
        timing = bc.create_timing_cache(tc_path.read_bytes() if tc_path.is_file() else b"")
        bc.set_timing_cache(timing, False)
        log.info("building a %s engine for %s (TensorRT %s); this takes minutes on a Jetson", config.precision,
                 device.name, trt.__version__)
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, bc)
        build_s = time.perf_counter() - t0
        if serialized is None:
            raise EngineBuildError("TensorRT could not build the engine: " + ("; ".join(logger.errors) or "no message"))
        if calibration is not None:
            calibration["stacks_used"] = getattr(calibrator, "used", None)
        from model.atomic import atomic_write_bytes, atomic_write_with

        engine_path = config.engine_path
        atomic_write_with(engine_path, lambda fh: fh.write(memoryview(serialized)))
        atomic_write_bytes(tc_path, bytes(memoryview(bc.get_timing_cache().serialize())))
        command = trtexec_command(onnx_path if info.target == "tensorrt" or info.graph == "net"
                                  else _trt_flavour_name(onnx_path), config, shapes, dynamic=dynamic,
                                  plugin=plugin_path, trt_major=major)
        record = {
            "format": ENGINE_FORMAT, "engine": engine_path.name, "sha256": sha256_file(engine_path),
            "tensorrt_version": str(trt.__version__), "gpu": device.as_dict(), "precision": config.precision,
            "workspace_mb": int(config.workspace_mb),
            "onnx": {"path": str(onnx_path), "sha256": sha256_file(onnx_path), "flavour": info.target},
            "graph": info.graph,
            "plugin": {"needed": info.graph == "physics", "name": "GaussPSF", "version": "1",
                       "library": str(plugin_path) if plugin_path else None},
            "shapes": shapes, "dynamic": dynamic,
            "inputs": {"images": "float32 (1, S, 3, H, W) RGB in [0, 1], nearest focus first",
                       "focus_m": "float32 (1, S) metres"},
            "outputs": list(info.outputs),
            "lens": info.lens.to_dict(), "focus_distances_m": list(info.focus_m),
            "working_range_m": list(info.working_range_m), "onnx_metadata": dict(info.props),
            "calibration": calibration, "timing_cache": str(tc_path), "build_s": round(build_s, 2),
            "trtexec": command, "package_version": package_version(), "created": utc_now(), "notes": notes,
        }
        meta = write_sidecar(engine_path, record)
        return EngineResult(engine=engine_path, metadata=meta, timing_cache=tc_path, trtexec=command,
                            build_s=build_s, calibration=calibration, notes=notes)
    finally:
        if calibrator is not None:
            calibrator.close()
        if own_cuda:
            cuda.close()


def _trt_flavour_name(onnx_path: Path) -> Path:
    """The TensorRT flavour written beside an onnxruntime-flavour file by ``--target both``."""
    name = onnx_path.name
    stem = name[: -len(".onnx")] if name.endswith(".onnx") else name
    return onnx_path.with_name(stem + ".trt.onnx")
