"""Faithful fakes of the parts of cuda-python, pycuda and the TensorRT Python API that ``export`` uses.

There is no GPU and no TensorRT builder on CI, so these stand in for them. They follow the real APIs'
signatures and return conventions (cuda-python returns ``(CUresult, value...)`` tuples; TensorRT returns
``None``/``False`` and logs an error instead of raising) and enforce the rules the real libraries enforce
where our code could get them wrong:

* CUDA: memory calls need a current context; device pointers must come from ``cuMemAlloc`` and copies must
  stay inside the allocation; streams must exist; double frees fail. "Device" memory is host memory, so a
  copy really moves bytes and the fake engine computes on what was copied.
* TensorRT: the ONNX parser refuses IR versions newer than TensorRT 10's and ops it cannot import; a
  ``GaussPSF`` node needs a creator in the plugin registry (loaded with ``load_library``); a network with
  dynamic inputs needs an optimisation profile covering them; INT8 calls the calibrator exactly as TensorRT
  does (``read_calibration_cache``, ``get_batch`` until it returns ``None``, ``write_calibration_cache``) and
  reads the batches from device memory; the serialized engine records the TensorRT version and the GPU, and
  deserialization refuses another version, another GPU or a missing plugin creator; ``set_input_shape``
  refuses shapes outside the profile; ``execute_async_v3`` reads inputs from and writes outputs to the device
  addresses it was given. The engine computes with onnxruntime (the GaussPSF node through the
  onnxruntime-extensions op), so results are real.

A stand-in plugin library for the fake registry is a text file whose first line is
``FAKE-TRT-PLUGIN GaussPSF 1`` (a real ``libgausspsf_trt.so`` exporting ``getCreators`` is accepted too).

The runtime-side names used here are checked against the real ``tensorrt_lean`` module in the tests.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import types
from pathlib import Path
from typing import Any

import numpy as np

# ==================================================================================================
# cuda-python (cuda.bindings.driver)


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_CONTEXT = 201
    CUDA_ERROR_INVALID_HANDLE = 400


class CUdevice_attribute(enum.IntEnum):
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


class _Handle:
    def __init__(self, value: int) -> None:
        self._value = int(value)

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's spelling
        return self._value


class FakeCudaDriver:
    """The subset of ``cuda.bindings.driver`` used by ``export.cuda_backend.CudaPythonBackend``."""

    CUresult = CUresult
    CUdevice_attribute = CUdevice_attribute

    def __init__(self, name: str = "Orin", cc: tuple[int, int] = (8, 7), devices: int = 1, driver_present: bool = True) -> None:
        self.name, self.cc, self.devices, self.driver_present = name, cc, devices, driver_present
        self.initialised = False
        self.current_ctx: Any = None
        self.ctx_refs = 0
        self.device_mem: dict[int, ctypes.Array] = {}
        self.host_mem: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()
        self._next_stream = 0x5000
        self.copies: list[tuple[str, int, int]] = []  # (kind, bytes, stream)

    # --- helpers
    def _need_ctx(self) -> CUresult | None:
        if not self.initialised:
            return CUresult.CUDA_ERROR_NOT_INITIALIZED
        if self.current_ctx is None:
            return CUresult.CUDA_ERROR_INVALID_CONTEXT
        return None

    def _stream_ok(self, stream: Any) -> bool:
        return int(stream) == 0 or int(stream) in self.streams

    def device_range(self, ptr: int, nbytes: int) -> bool:
        """Whether ``[ptr, ptr + nbytes)`` lies inside one device allocation."""
        for base, buf in self.device_mem.items():
            if base <= ptr and ptr + nbytes <= base + ctypes.sizeof(buf):
                return True
        return False

    def host_range(self, ptr: int, nbytes: int) -> bool:
        for base, buf in self.host_mem.items():
            if base <= ptr and ptr + nbytes <= base + ctypes.sizeof(buf):
                return True
        return False

    def read_device(self, ptr: int, nbytes: int) -> bytes:
        if not self.device_range(ptr, nbytes):
            raise AssertionError(f"read of {nbytes} bytes at {ptr:#x} outside any device allocation")
        return ctypes.string_at(ptr, nbytes)

    def write_device(self, ptr: int, data: bytes) -> None:
        if not self.device_range(ptr, len(data)):
            raise AssertionError(f"write of {len(data)} bytes at {ptr:#x} outside any device allocation")
        ctypes.memmove(ptr, data, len(data))

    # --- API
    def cuInit(self, flags: int) -> tuple:  # noqa: N802
        if not self.driver_present:
            raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found via system search')
        if self.devices == 0:
            return (CUresult.CUDA_ERROR_NO_DEVICE,)
        self.initialised = True
        return (CUresult.CUDA_SUCCESS,)

    def cuGetErrorString(self, err: Any) -> tuple:  # noqa: N802
        return (CUresult.CUDA_SUCCESS, CUresult(int(err)).name.encode())

    def cuDeviceGetCount(self) -> tuple:  # noqa: N802
        if not self.initialised:
            return (CUresult.CUDA_ERROR_NOT_INITIALIZED, 0)
        return (CUresult.CUDA_SUCCESS, self.devices)

    def cuDeviceGet(self, ordinal: int) -> tuple:  # noqa: N802
        if not 0 <= ordinal < self.devices:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
        return (CUresult.CUDA_SUCCESS, _Handle(ordinal))

    def cuDevicePrimaryCtxRetain(self, dev: Any) -> tuple:  # noqa: N802
        self.ctx_refs += 1
        return (CUresult.CUDA_SUCCESS, _Handle(0xC0 + int(dev)))

    def cuDevicePrimaryCtxRelease(self, dev: Any) -> tuple:  # noqa: N802
        if self.ctx_refs <= 0:
            return (CUresult.CUDA_ERROR_INVALID_CONTEXT,)
        self.ctx_refs -= 1
        if self.ctx_refs == 0:
            self.current_ctx = None
        return (CUresult.CUDA_SUCCESS,)

    def cuCtxSetCurrent(self, ctx: Any) -> tuple:  # noqa: N802
        self.current_ctx = ctx
        return (CUresult.CUDA_SUCCESS,)

    def cuDeviceGetName(self, length: int, dev: Any) -> tuple:  # noqa: N802
        raw = self.name.encode()[: length - 1]
        return (CUresult.CUDA_SUCCESS, raw + b"\x00" * (length - len(raw)))

    def cuDeviceGetAttribute(self, attr: Any, dev: Any) -> tuple:  # noqa: N802
        if attr == CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
            return (CUresult.CUDA_SUCCESS, self.cc[0])
        if attr == CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
            return (CUresult.CUDA_SUCCESS, self.cc[1])
        return (CUresult.CUDA_ERROR_INVALID_VALUE, 0)

    def cuDeviceTotalMem(self, dev: Any) -> tuple:  # noqa: N802
        return (CUresult.CUDA_SUCCESS, 8 << 30)

    def cuDriverGetVersion(self) -> tuple:  # noqa: N802
        return (CUresult.CUDA_SUCCESS, 12060)

    def cuMemAlloc(self, nbytes: int) -> tuple:  # noqa: N802
        err = self._need_ctx()
        if err is not None:
            return (err, None)
        if nbytes <= 0:
            return (CUresult.CUDA_ERROR_INVALID_VALUE, None)
        buf = (ctypes.c_uint8 * int(nbytes))()
        ptr = ctypes.addressof(buf)
        self.device_mem[ptr] = buf
        return (CUresult.CUDA_SUCCESS, _Handle(ptr))

    def cuMemFree(self, ptr: Any) -> tuple:  # noqa: N802
        if self.device_mem.pop(int(ptr), None) is None:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        return (CUresult.CUDA_SUCCESS,)

    def cuMemHostAlloc(self, nbytes: int, flags: int) -> tuple:  # noqa: N802
        err = self._need_ctx()
        if err is not None:
            return (err, 0)
        buf = (ctypes.c_uint8 * int(nbytes))()
        ptr = ctypes.addressof(buf)
        self.host_mem[ptr] = buf
        return (CUresult.CUDA_SUCCESS, ptr)

    def cuMemFreeHost(self, ptr: int) -> tuple:  # noqa: N802
        if self.host_mem.pop(int(ptr), None) is None:
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamCreate(self, flags: int) -> tuple:  # noqa: N802
        err = self._need_ctx()
        if err is not None:
            return (err, None)
        self._next_stream += 16
        self.streams.add(self._next_stream)
        return (CUresult.CUDA_SUCCESS, _Handle(self._next_stream))

    def cuStreamDestroy(self, stream: Any) -> tuple:  # noqa: N802
        if int(stream) not in self.streams:
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        self.streams.discard(int(stream))
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamSynchronize(self, stream: Any) -> tuple:  # noqa: N802
        return (CUresult.CUDA_SUCCESS,) if self._stream_ok(stream) else (CUresult.CUDA_ERROR_INVALID_HANDLE,)

    def cuMemcpyHtoDAsync(self, dst: Any, src: int, nbytes: int, stream: Any) -> tuple:  # noqa: N802
        err = self._need_ctx()
        if err is not None:
            return (err,)
        if not self._stream_ok(stream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        if not self.device_range(int(dst), nbytes):
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        self.copies.append(("htod", int(nbytes), int(stream)))
        return (CUresult.CUDA_SUCCESS,)

    def cuMemcpyDtoHAsync(self, dst: int, src: Any, nbytes: int, stream: Any) -> tuple:  # noqa: N802
        err = self._need_ctx()
        if err is not None:
            return (err,)
        if not self._stream_ok(stream):
            return (CUresult.CUDA_ERROR_INVALID_HANDLE,)
        if not self.device_range(int(src), nbytes):
            return (CUresult.CUDA_ERROR_INVALID_VALUE,)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        self.copies.append(("dtoh", int(nbytes), int(stream)))
        return (CUresult.CUDA_SUCCESS,)


# ==================================================================================================
# pycuda (pycuda.driver)


class FakePyCuda:
    """The subset of ``pycuda.driver`` used by ``export.cuda_backend.PyCudaBackend``; shares a FakeCudaDriver."""

    def __init__(self, driver: FakeCudaDriver) -> None:
        self._drv = driver
        fake = self

        class Device:
            @staticmethod
            def count() -> int:
                return driver.devices

            def __init__(self, ordinal: int) -> None:
                self.ordinal = ordinal

            def name(self) -> str:
                return driver.name

            def compute_capability(self) -> tuple[int, int]:
                return driver.cc

            def total_memory(self) -> int:
                return 8 << 30

            def retain_primary_context(self) -> Any:
                driver.cuDevicePrimaryCtxRetain(self.ordinal)
                return _Context(self.ordinal)

        class _Context:
            def __init__(self, ordinal: int) -> None:
                self.ordinal = ordinal

            def push(self) -> None:
                driver.cuCtxSetCurrent(_Handle(0xC0 + self.ordinal))

            def pop(self) -> None:
                pass

            def detach(self) -> None:
                driver.cuDevicePrimaryCtxRelease(self.ordinal)

        class DeviceAllocation:
            def __init__(self, nbytes: int) -> None:
                err, ptr = driver.cuMemAlloc(nbytes)
                if err:
                    raise RuntimeError(f"mem_alloc failed: {err.name}")
                self.ptr = int(ptr)

            def __int__(self) -> int:
                return self.ptr

            def free(self) -> None:
                driver.cuMemFree(self.ptr)

        class Stream:
            def __init__(self) -> None:
                err, handle = driver.cuStreamCreate(1)
                if err:
                    raise RuntimeError(err.name)
                self.handle = int(handle)

            def synchronize(self) -> None:
                driver.cuStreamSynchronize(self.handle)

        self.Device = Device
        self.Stream = Stream
        self._alloc_cls = DeviceAllocation
        _ = fake

    def init(self) -> None:
        if self._drv.cuInit(0)[0]:
            raise RuntimeError("cuInit failed")

    def get_driver_version(self) -> int:
        return 12060

    def mem_alloc(self, nbytes: int) -> Any:
        return self._alloc_cls(nbytes)

    def pagelocked_empty(self, n: int, dtype: Any) -> np.ndarray:
        return np.empty(n, dtype)

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        assert self._drv.cuMemcpyHtoDAsync(int(dst), src.ctypes.data, src.nbytes, stream.handle)[0] == 0

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        assert self._drv.cuMemcpyDtoHAsync(dst.ctypes.data, int(src), dst.nbytes, stream.handle)[0] == 0


# ==================================================================================================
# TensorRT


MAGIC = b"FAKETRT\x01"
PLUGIN_STANDIN = "FAKE-TRT-PLUGIN"
ONNX_MAX_IR = 10      # TensorRT 10.x's ONNX parser (onnx 1.16)
ONNX_MAX_OPSET = 20


class FakeHostMemory(bytes):
    """``IHostMemory``: a buffer (here: bytes) with ``nbytes``."""

    @property
    def nbytes(self) -> int:
        return len(self)


def make_fake_tensorrt(version: str = "10.3.0", driver: FakeCudaDriver | None = None) -> types.ModuleType:
    """A module standing in for ``tensorrt`` (the builder and runtime subset ``export`` uses).

    ``driver`` is the fake CUDA driver whose memory the engine reads and writes and whose GPU the engine is
    built for (required for building and running; not for the parser).
    """
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.stats = {"builds": 0, "timing_cache_hits": 0, "calibration_batches": 0, "executions": 0}

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    _severity = Severity

    class ILogger:
        Severity = _severity

        def __init__(self) -> None:
            pass

        def log(self, severity: Severity, msg: str) -> None:  # overridden by users
            pass

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = list(Severity)

        def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
            super().__init__()
            self.min_severity = min_severity
            self.messages: list[tuple[Severity, str]] = []

        def log(self, severity: Severity, msg: str) -> None:
            self.messages.append((severity, msg))

    BuilderFlag = enum.IntEnum("BuilderFlag", ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "TF32",
                                               "SPARSE_WEIGHTS", "VERSION_COMPATIBLE", "STRICT_NANS"], start=0)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM",
                                                     "DLA_GLOBAL_DRAM", "TACTIC_DRAM"], start=0)
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64"],
                            start=0)
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
                                                 start=0)
    _np = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
           DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}

    def nptype(dt: Any) -> type:
        return _np[DataType(dt)]

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    # ---------------------------------------------------------------- plugin registry
    class PluginCreator:
        def __init__(self, name: str, version: str, namespace: str = "") -> None:
            self.name, self.plugin_version, self.plugin_namespace = name, version, namespace
            self.field_names = ["radius"]

    class PluginRegistry:
        def __init__(self) -> None:
            self.creators: dict[tuple[str, str, str], PluginCreator] = {}
            self.libraries: list[str] = []

        def load_library(self, path: str) -> Any:
            p = Path(path)
            if not p.is_file():
                return None
            names: list[tuple[str, str]] = []
            head = p.read_bytes()[:64]
            if head.startswith(PLUGIN_STANDIN.encode()):
                parts = head.split(b"\n")[0].decode().split()
                names.append((parts[1], parts[2]))
            else:
                try:
                    lib = ctypes.CDLL(str(p))
                except OSError:
                    return None
                if not hasattr(lib, "getCreators"):
                    return None
                names.append(("GaussPSF", "1"))
            for name, ver in names:
                self.creators[(name, ver, "")] = PluginCreator(name, ver)
            self.libraries.append(str(p))
            return object()

        def get_creator(self, name: str, version: str, namespace: str = "") -> PluginCreator | None:
            return self.creators.get((name, version, namespace))

        @property
        def all_creators(self) -> list[PluginCreator]:
            return list(self.creators.values())

    registry = PluginRegistry()

    def get_plugin_registry() -> PluginRegistry:
        return registry

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        return True

    # ---------------------------------------------------------------- network, parser
    class ITensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any = DataType.FLOAT) -> None:
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.model: Any = None
            self.plugins: list[str] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        @property
        def num_layers(self) -> int:
            return 0 if self.model is None else len(self.model.graph.node)

        def get_input(self, i: int) -> ITensor:
            return self.inputs[i]

        def get_output(self, i: int) -> ITensor:
            return self.outputs[i]

    class ParserError:
        def __init__(self, desc: str, node: int = -1) -> None:
            self._desc, self._node = desc, node

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

        def code(self) -> int:
            return 1

    def _dims(value_info: Any) -> tuple[int, ...]:
        return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim)

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            self.network, self.logger = network, logger
            self.errors: list[ParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

        def clear_errors(self) -> None:
            self.errors.clear()

        def parse_from_file(self, path: str) -> bool:
            return self.parse(Path(path).read_bytes(), path)

        def parse(self, model: bytes, path: str | None = None) -> bool:
            try:
                m = onnx.load_from_string(bytes(model))
            except Exception as e:  # noqa: BLE001
                self.errors.append(ParserError(f"Failed to parse ONNX model: {e}"))
                return False
            if m.ir_version > ONNX_MAX_IR:
                self.errors.append(ParserError(f"Unsupported IR version {m.ir_version} (max {ONNX_MAX_IR})"))
                return False
            opset = {o.domain: o.version for o in m.opset_import}.get("", 0)
            if opset > ONNX_MAX_OPSET:
                self.errors.append(ParserError(f"Unsupported opset {opset} (max {ONNX_MAX_OPSET})"))
                return False
            plugins = []
            for i, node in enumerate(m.graph.node):
                if node.domain in ("", "ai.onnx") and onnx.defs.has(node.op_type):
                    continue
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                version = attrs.get("plugin_version", b"1")
                namespace = attrs.get("plugin_namespace", b"")
                version = version.decode() if isinstance(version, bytes) else str(version)
                namespace = namespace.decode() if isinstance(namespace, bytes) else str(namespace)
                creator = registry.get_creator(node.op_type, version, namespace)
                if creator is None:
                    self.errors.append(ParserError(
                        f"No importer registered for op: {node.op_type}. Attempting to import as plugin. "
                        f"Plugin not found: {node.op_type} version {version} namespace {namespace!r}", i))
                    continue
                fields = {k: v for k, v in attrs.items() if k in creator.field_names}
                if "radius" not in fields or not 0 <= int(fields["radius"]) <= 64:
                    self.errors.append(ParserError(f"plugin {node.op_type}: createPlugin failed (radius {fields})", i))
                    continue
                plugins.append(node.op_type)
            if self.errors:
                return False
            self.network.model = m
            self.network.plugins = plugins
            init = {t.name for t in m.graph.initializer}
            self.network.inputs = [ITensor(v.name, _dims(v)) for v in m.graph.input if v.name not in init]
            self.network.outputs = [ITensor(v.name, _dims(v)) for v in m.graph.output]
            return True

    # ---------------------------------------------------------------- builder config
    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

        def set_shape(self, name: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
            self.shapes[name] = (tuple(int(v) for v in min), tuple(int(v) for v in opt), tuple(int(v) for v in max))

        def get_shape(self, name: str) -> list[tuple[int, ...]]:
            return list(self.shapes[name])

    class ITimingCache:
        def __init__(self, entries: dict[str, Any]) -> None:
            self.entries = dict(entries)

        def serialize(self) -> FakeHostMemory:
            return FakeHostMemory(b"FAKETC" + json.dumps(self.entries).encode())

        def combine(self, other: "ITimingCache", ignore_mismatch: bool) -> bool:
            self.entries.update(other.entries)
            return True

        def reset(self) -> bool:
            self.entries.clear()
            return True

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags: set[Any] = set()
            self.pools: dict[Any, int] = {}
            self.profiles: list[IOptimizationProfile] = []
            self.calibration_profile: IOptimizationProfile | None = None
            self.int8_calibrator: Any = None
            self.timing_cache: ITimingCache | None = None

        def set_flag(self, flag: Any) -> None:
            self.flags.add(BuilderFlag(flag))

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(BuilderFlag(flag))

        def get_flag(self, flag: Any) -> bool:
            return BuilderFlag(flag) in self.flags

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self.pools[MemoryPoolType(pool)] = int(size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self.pools.get(MemoryPoolType(pool), 0)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
            self.calibration_profile = profile
            return True

        def get_calibration_profile(self) -> IOptimizationProfile | None:
            return self.calibration_profile

        def create_timing_cache(self, serialized: Any) -> ITimingCache:
            data = bytes(serialized)
            if not data:
                return ITimingCache({})
            if not data.startswith(b"FAKETC"):
                raise RuntimeError("invalid timing cache")
            return ITimingCache(json.loads(data[6:]))

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self.timing_cache

    # ---------------------------------------------------------------- builder
    class Builder:
        def __init__(self, logger: Any) -> None:
            if not isinstance(logger, ILogger):
                raise TypeError("Builder needs an ILogger")
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _error(self, msg: str) -> None:
            self.logger.log(Severity.ERROR, msg)

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> FakeHostMemory | None:
            if driver is None or driver.current_ctx is None:
                self._error("CUDA initialization failure: no current context")
                return None
            if network.model is None:
                self._error("Network must have at least one output")
                return None
            if config.get_memory_pool_limit(MemoryPoolType.WORKSPACE) <= 0:
                self._error("workspace limit not set")
            profile = config.profiles[0] if config.profiles else None
            for tensor in network.inputs:
                dynamic = any(d < 0 for d in tensor.shape)
                if profile is None or tensor.name not in profile.shapes:
                    if dynamic:
                        self._error("Network has dynamic or shape inputs, but no optimization profile has been "
                                    f"defined for {tensor.name}.")
                        return None
                    continue
                lo, opt, hi = profile.shapes[tensor.name]
                for dims in (lo, opt, hi):
                    if len(dims) != len(tensor.shape) or any(d != s for d, s in zip(dims, tensor.shape) if s >= 0):
                        self._error(f"{tensor.name}: profile dimensions {dims} do not match the network {tensor.shape}")
                        return None
                if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                    self._error(f"{tensor.name}: profile needs min <= opt <= max, got {lo} {opt} {hi}")
                    return None
            flags = sorted(f.name for f in config.flags)
            calibration: dict[str, float] | None = None
            if BuilderFlag.INT8 in config.flags:
                calib = config.int8_calibrator
                if calib is None:
                    self._error("INT8 requested without a calibrator or dynamic ranges")
                    return None
                calibration = self._calibrate(network, config, calib, profile)
                if calibration is None:
                    return None
            key = hashlib.sha256(network.model.SerializeToString() + ",".join(flags).encode()).hexdigest()[:16]
            if config.timing_cache is not None:
                if key in config.timing_cache.entries:
                    trt.stats["timing_cache_hits"] += 1
                config.timing_cache.entries[key] = {"tactics": len(network.model.graph.node)}
            header = {
                "version": version, "device": [driver.name, list(driver.cc)], "flags": flags,
                "profile": {k: [list(x) for x in v] for k, v in (profile.shapes.items() if profile else [])},
                "plugins": network.plugins, "calibration": calibration,
                "inputs": [[t.name, list(t.shape)] for t in network.inputs],
                "outputs": [[t.name, list(t.shape)] for t in network.outputs],
            }
            trt.stats["builds"] += 1
            head = json.dumps(header).encode()
            return FakeHostMemory(MAGIC + len(head).to_bytes(4, "little") + head + network.model.SerializeToString())

        def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig, calib: Any,
                       profile: IOptimizationProfile | None) -> dict[str, float] | None:
            cached = calib.read_calibration_cache()
            if cached:
                data = bytes(cached)
                if not data.startswith(b"FAKECALIB"):
                    self._error("calibration cache is invalid")
                    return None
                return json.loads(data[9:])
            if calib.get_batch_size() != 1:
                self._error("calibration batch size must match the profile's batch of 1")
                return None
            prof = config.calibration_profile or profile
            names = [t.name for t in network.inputs]
            amax = {n: 0.0 for n in names}
            batches = 0
            while True:
                pointers = calib.get_batch(names)
                if not pointers:
                    break
                for name, ptr in zip(names, pointers):
                    shape = prof.shapes[name][1] if prof and name in prof.shapes else \
                        next(t.shape for t in network.inputs if t.name == name)
                    nbytes = int(np.prod(shape)) * 4
                    arr = np.frombuffer(driver.read_device(int(ptr), nbytes), np.float32)
                    amax[name] = max(amax[name], float(np.abs(arr).max()))
                batches += 1
            if batches == 0:
                self._error("Calibration failure: no calibration batches")
                return None
            trt.stats["calibration_batches"] += batches
            calib.write_calibration_cache(FakeHostMemory(b"FAKECALIB" + json.dumps(amax).encode()))
            return amax

    # ---------------------------------------------------------------- runtime
    class IExecutionContext:
        def __init__(self, engine: "ICudaEngine") -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self._output_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}
            self.streams_used: list[int] = []

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(v) for v in shape)
            if name not in self.engine.profile:
                fixed = self.engine.declared[name]
                if shape != fixed:
                    self.engine.logger.log(Severity.ERROR, f"{name}: shape {shape} differs from {fixed}")
                    return False
            else:
                lo, _opt, hi = self.engine.profile[name]
                if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                    self.engine.logger.log(Severity.ERROR, f"IExecutionContext::setInputShape: {name} {shape} is "
                                                           f"outside the profile [{lo}, {hi}]")
                    return False
            self.shapes[name] = shape
            return True

        def _ensure_output_shapes(self) -> dict[str, tuple[int, ...]]:
            key = tuple(sorted(self.shapes.items()))
            if key not in self._output_shapes:
                feeds = {n: np.zeros(s, np.float32) + (1.0 if n == "focus_m" else 0.5) for n, s in self.shapes.items()}
                outs = self.engine.session().run(None, feeds)
                self._output_shapes[key] = {n: tuple(o.shape) for n, o in zip(self.engine.output_names, outs)}
            return self._output_shapes[key]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.engine.input_names:
                return self.shapes.get(name, self.engine.declared[name])
            if set(self.shapes) != set(self.engine.input_names):
                return self.engine.declared[name]
            return self._ensure_output_shapes()[name]

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            if name not in self.engine.input_names + self.engine.output_names:
                return False
            self.addresses[name] = int(ptr)
            return True

        def get_tensor_address(self, name: str) -> int:
            return self.addresses.get(name, 0)

        def execute_async_v3(self, stream_handle: int) -> bool:
            log = self.engine.logger
            if not driver._stream_ok(stream_handle):
                log.log(Severity.ERROR, "invalid stream")
                return False
            self.streams_used.append(int(stream_handle))
            if set(self.shapes) != set(self.engine.input_names):
                log.log(Severity.ERROR, "not all input shapes are specified")
                return False
            names = self.engine.input_names + self.engine.output_names
            if any(n not in self.addresses for n in names):
                log.log(Severity.ERROR, "not all tensor addresses are set")
                return False
            feeds = {}
            for name in self.engine.input_names:
                nbytes = int(np.prod(self.shapes[name])) * 4
                feeds[name] = np.frombuffer(driver.read_device(self.addresses[name], nbytes), np.float32).reshape(
                    self.shapes[name])
            outs = self.engine.session().run(None, feeds)
            for name, out in zip(self.engine.output_names, outs):
                driver.write_device(self.addresses[name], np.ascontiguousarray(out, np.float32).tobytes())
            trt.stats["executions"] += 1
            return True

    class ICudaEngine:
        def __init__(self, header: dict[str, Any], model_bytes: bytes, logger: Any) -> None:
            self.header, self.model_bytes, self.logger = header, model_bytes, logger
            self.input_names = [n for n, _ in header["inputs"]]
            self.output_names = [n for n, _ in header["outputs"]]
            self.declared = {n: tuple(s) for n, s in header["inputs"] + header["outputs"]}
            self.profile = {k: tuple(tuple(x) for x in v) for k, v in header["profile"].items()}
            self._session: Any = None

        def session(self) -> Any:
            if self._session is None:
                import onnxruntime as ort

                from export import ort_ops
                from export.targets import to_onnxruntime_flavour

                model = to_onnxruntime_flavour(onnx.load_from_string(self.model_bytes))
                self._session = ort.InferenceSession(model.SerializeToString(),
                                                     ort_ops.session_options(1, custom_ops=bool(self.header["plugins"])),
                                                     providers=["CPUExecutionProvider"])
            return self._session

        @property
        def num_io_tensors(self) -> int:
            return len(self.input_names) + len(self.output_names)

        @property
        def num_optimization_profiles(self) -> int:
            return 1

        def get_tensor_name(self, i: int) -> str:
            return (self.input_names + self.output_names)[i]

        def get_tensor_mode(self, name: str) -> Any:
            return TensorIOMode.INPUT if name in self.input_names else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self.declared[name]

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            return list(self.profile[name])

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

        def serialize(self) -> FakeHostMemory:
            head = json.dumps(self.header).encode()
            return FakeHostMemory(MAGIC + len(head).to_bytes(4, "little") + head + self.model_bytes)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            if not isinstance(logger, ILogger):
                raise TypeError("Runtime needs an ILogger")
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            if not data.startswith(MAGIC):
                self.logger.log(Severity.ERROR, "1: [runtime.cpp::parsePlan] Magic tag does not match")
                return None
            n = int.from_bytes(data[8:12], "little")
            header = json.loads(data[12:12 + n])
            if header["version"] != version:
                self.logger.log(Severity.ERROR, "The engine plan file is not compatible with this version of "
                                f"TensorRT, expecting library version {version} got {header['version']}")
                return None
            if driver is None or [driver.name, list(driver.cc)] != header["device"]:
                self.logger.log(Severity.ERROR, f"The engine plan file is generated on an incompatible device, "
                                f"expecting compute {header['device'][1]} got "
                                f"{None if driver is None else list(driver.cc)}")
                return None
            for plugin in header["plugins"]:
                if registry.get_creator(plugin, "1", "") is None:
                    self.logger.log(Severity.ERROR, f"getPluginCreator could not find plugin: {plugin} version: 1")
                    return None
            return ICudaEngine(header, data[12 + n:], self.logger)

    for name, value in dict(
        ILogger=ILogger, Logger=Logger, BuilderFlag=BuilderFlag, MemoryPoolType=MemoryPoolType,
        TensorIOMode=TensorIOMode, DataType=DataType, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        nptype=nptype, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2, get_plugin_registry=get_plugin_registry,
        init_libnvinfer_plugins=init_libnvinfer_plugins, OnnxParser=OnnxParser, Builder=Builder,
        IBuilderConfig=IBuilderConfig, IOptimizationProfile=IOptimizationProfile, ITimingCache=ITimingCache,
        INetworkDefinition=INetworkDefinition, Runtime=Runtime, ICudaEngine=ICudaEngine,
        IExecutionContext=IExecutionContext, IPluginRegistry=PluginRegistry, IHostMemory=FakeHostMemory,
    ).items():
        setattr(trt, name, value)
    return trt


def write_plugin_standin(path: Path) -> Path:
    """A stand-in plugin library the fake registry accepts (see the module docstring)."""
    path.write_text(f"{PLUGIN_STANDIN} GaussPSF 1\n")
    return path
