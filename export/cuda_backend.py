"""Device memory, pinned host memory and streams for the TensorRT runtime, through cuda-python or pycuda.

:func:`open_cuda` returns a :class:`CudaBackend`: :class:`CudaPythonBackend` (NVIDIA's ``cuda-python``
driver bindings; installs from wheels on x86-64 and aarch64) or :class:`PyCudaBackend` (``pycuda``, which
many Jetson users already have). Both use the device's *primary* context, the one the CUDA runtime inside
TensorRT uses, so buffers allocated here are valid for TensorRT.

Without a driver (a machine with no NVIDIA GPU) cuda-python imports but fails at ``cuInit``; that becomes a
:class:`export.errors.CudaUnavailableError` that says so and names the onnxruntime fallback.

The backend's driver module is injectable (``driver=``), which is how the tests run this code against a
faithful fake of the cuda-python API that keeps "device" memory in host memory.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from export.errors import CudaUnavailableError, RuntimeUnavailableError

__all__ = ["CUDA_BACKENDS", "DeviceInfo", "CudaError", "CudaBackend", "CudaPythonBackend", "PyCudaBackend", "open_cuda"]

log = logging.getLogger(__name__)
CUDA_BACKENDS = ("auto", "cuda-python", "pycuda")
_NO_GPU_FALLBACK = "run the ONNX file on the CPU: --runtime onnxruntime --model MODEL.onnx"


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU: ``name``, ``compute_capability`` (``"8.7"``), memory in bytes and the driver's CUDA version."""

    name: str
    compute_capability: str
    total_memory_bytes: int
    driver_version: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "compute_capability": self.compute_capability,
                "total_memory_bytes": self.total_memory_bytes, "driver_version": self.driver_version}


class CudaError(RuntimeError):
    """A CUDA driver call failed after initialisation (names the call and the driver's message)."""


@runtime_checkable
class CudaBackend(Protocol):
    """What the TensorRT runtime needs from CUDA. Pointers are ints; host buffers are NumPy ``uint8`` arrays."""

    name: str

    def device_info(self) -> DeviceInfo: ...

    def alloc(self, nbytes: int) -> int: ...

    def free(self, ptr: int) -> None: ...

    def alloc_pinned(self, nbytes: int) -> np.ndarray: ...

    def free_pinned(self, array: np.ndarray) -> None: ...

    def create_stream(self) -> int: ...

    def destroy_stream(self, stream: int) -> None: ...

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None: ...

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None: ...

    def synchronize(self, stream: int) -> None: ...

    def close(self) -> None: ...


def _import_cuda_python() -> Any:
    try:
        from cuda.bindings import driver  # cuda-python >= 12.6

        return driver
    except ImportError:
        pass
    try:
        from cuda import cuda as driver  # older cuda-python

        return driver
    except ImportError:
        raise RuntimeUnavailableError("cuda-python is not installed (pip install cuda-python)",
                                      _NO_GPU_FALLBACK) from None


class CudaPythonBackend:
    """:class:`CudaBackend` over cuda-python's driver API (``cuInit``, primary context, ``cuMemAlloc``,
    ``cuMemHostAlloc``, ``cuMemcpy*Async``, ``cuStream*``).

    Args:
        device: GPU index.
        driver: the ``cuda.bindings.driver`` module (default: imported), injectable for tests.

    Raises:
        RuntimeUnavailableError: cuda-python is missing.
        CudaUnavailableError: no driver, no GPU, or the context cannot be made current.
    """

    name = "cuda-python"

    def __init__(self, device: int = 0, driver: Any = None) -> None:
        self._drv = driver if driver is not None else _import_cuda_python()
        self._streams: dict[int, Any] = {}
        self._pinned: dict[int, int] = {}
        self._closed = False
        try:
            (err,) = self._drv.cuInit(0)
        except Exception as e:  # noqa: BLE001 - without a driver the bindings raise from their loader
            raise CudaUnavailableError(
                f"cuda-python cannot initialise CUDA: no NVIDIA driver here ({type(e).__name__}: {e})",
                _NO_GPU_FALLBACK) from None
        if int(err) != 0:
            raise CudaUnavailableError(f"cuInit failed: {self._error_string(err)} (no usable NVIDIA GPU/driver)",
                                       _NO_GPU_FALLBACK)
        try:
            count = self._call("cuDeviceGetCount")
            if int(count) <= device:
                raise CudaUnavailableError(f"GPU {device} requested but the driver sees {int(count)} GPU(s)",
                                           _NO_GPU_FALLBACK)
            self._dev = self._call("cuDeviceGet", int(device))
            self._ctx = self._call("cuDevicePrimaryCtxRetain", self._dev)
            self._call("cuCtxSetCurrent", self._ctx)
        except CudaError as e:
            raise CudaUnavailableError(str(e), _NO_GPU_FALLBACK) from None

    def _error_string(self, err: Any) -> str:
        try:
            res = self._drv.cuGetErrorString(err)
            text = res[1]
            return text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # noqa: BLE001 - best effort for a message
            return str(err)

    def _call(self, fn: str, *args: Any) -> Any:
        res = getattr(self._drv, fn)(*args)
        err, rest = res[0], tuple(res[1:])
        if int(err) != 0:
            raise CudaError(f"{fn} failed: {self._error_string(err)}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    def device_info(self) -> DeviceInfo:
        raw = self._call("cuDeviceGetName", 256, self._dev)
        name = (raw.decode(errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)).split("\x00")[0]
        attr = self._drv.CUdevice_attribute
        major = int(self._call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self._dev))
        minor = int(self._call("cuDeviceGetAttribute", attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self._dev))
        total = int(self._call("cuDeviceTotalMem", self._dev))
        version = int(self._call("cuDriverGetVersion"))
        return DeviceInfo(name=name.strip(), compute_capability=f"{major}.{minor}", total_memory_bytes=total,
                          driver_version=version)

    def alloc(self, nbytes: int) -> int:
        return int(self._call("cuMemAlloc", max(1, int(nbytes))))

    def free(self, ptr: int) -> None:
        self._call("cuMemFree", ptr)

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        n = max(1, int(nbytes))
        ptr = int(self._call("cuMemHostAlloc", n, 0))
        array = np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(ptr))
        self._pinned[array.ctypes.data] = ptr
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        ptr = self._pinned.pop(array.ctypes.data, None)
        if ptr is not None:
            self._call("cuMemFreeHost", ptr)

    def create_stream(self) -> int:
        stream = self._call("cuStreamCreate", 1)  # CU_STREAM_NON_BLOCKING: no sync with the legacy default stream
        handle = int(stream)
        self._streams[handle] = stream
        return handle

    def destroy_stream(self, stream: int) -> None:
        obj = self._streams.pop(stream, None)
        if obj is not None:
            self._call("cuStreamDestroy", obj)

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._call("cuMemcpyHtoDAsync", dst, src.ctypes.data, src.nbytes, self._streams.get(stream, stream))

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._call("cuMemcpyDtoHAsync", dst.ctypes.data, src, dst.nbytes, self._streams.get(stream, stream))

    def synchronize(self, stream: int) -> None:
        self._call("cuStreamSynchronize", self._streams.get(stream, stream))

    def close(self) -> None:
        """Release what this backend made (streams, pinned memory, the primary-context reference). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for handle in list(self._streams):
            self.destroy_stream(handle)
        for ptr in list(self._pinned.values()):
            self._call("cuMemFreeHost", ptr)
        self._pinned.clear()
        self._call("cuDevicePrimaryCtxRelease", self._dev)


class PyCudaBackend:
    """:class:`CudaBackend` over pycuda (``pycuda.driver``), on the device's primary context.

    Args:
        device: GPU index.
        driver: the ``pycuda.driver`` module (default: imported), injectable for tests.
    """

    name = "pycuda"

    def __init__(self, device: int = 0, driver: Any = None) -> None:
        if driver is None:
            try:
                import pycuda.driver as driver  # type: ignore[import-not-found, no-redef]
            except ImportError:
                raise RuntimeUnavailableError("pycuda is not installed (pip install pycuda, or use cuda-python)",
                                              _NO_GPU_FALLBACK) from None
        self._cuda = driver
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}
        self._closed = False
        try:
            driver.init()
            if driver.Device.count() <= device:
                raise CudaUnavailableError(f"GPU {device} requested but pycuda sees {driver.Device.count()} GPU(s)",
                                           _NO_GPU_FALLBACK)
            self._dev = driver.Device(int(device))
            self._ctx = self._dev.retain_primary_context()
            self._ctx.push()
        except CudaUnavailableError:
            raise
        except Exception as e:  # noqa: BLE001 - pycuda.driver.Error and loader errors
            raise CudaUnavailableError(f"pycuda cannot initialise CUDA ({type(e).__name__}: {e})",
                                       _NO_GPU_FALLBACK) from None

    def device_info(self) -> DeviceInfo:
        major, minor = self._dev.compute_capability()
        return DeviceInfo(name=str(self._dev.name()), compute_capability=f"{major}.{minor}",
                          total_memory_bytes=int(self._dev.total_memory()),
                          driver_version=int(self._cuda.get_driver_version()))

    def alloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(max(1, int(nbytes)))
        ptr = int(allocation)
        self._allocs[ptr] = allocation
        return ptr

    def free(self, ptr: int) -> None:
        allocation = self._allocs.pop(ptr, None)
        if allocation is not None:
            allocation.free()

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        return self._cuda.pagelocked_empty(max(1, int(nbytes)), np.uint8)

    def free_pinned(self, array: np.ndarray) -> None:
        base = getattr(array, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def create_stream(self) -> int:
        stream = self._cuda.Stream()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def destroy_stream(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._cuda.memcpy_htod_async(dst, src, self._streams[stream])

    def dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._cuda.memcpy_dtoh_async(dst, src, self._streams[stream])

    def synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def close(self) -> None:
        """Free device memory and pop the primary context. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for ptr in list(self._allocs):
            self.free(ptr)
        self._streams.clear()
        self._ctx.pop()
        self._ctx.detach()


def open_cuda(kind: str = "auto", device: int = 0) -> CudaBackend:
    """Open a CUDA backend: ``"cuda-python"``, ``"pycuda"`` or ``"auto"`` (cuda-python if installed, else pycuda).

    Raises :class:`RuntimeUnavailableError` (neither installed) or :class:`CudaUnavailableError` (no GPU/driver).
    """
    if kind not in CUDA_BACKENDS:
        raise ValueError(f"unknown CUDA backend {kind!r}; choose one of: {', '.join(CUDA_BACKENDS)}")
    if kind == "cuda-python":
        return CudaPythonBackend(device)
    if kind == "pycuda":
        return PyCudaBackend(device)
    try:
        driver = _import_cuda_python()
    except RuntimeUnavailableError:
        try:
            return PyCudaBackend(device)
        except RuntimeUnavailableError:
            raise RuntimeUnavailableError("neither cuda-python nor pycuda is installed (pip install cuda-python)",
                                          _NO_GPU_FALLBACK) from None
    return CudaPythonBackend(device, driver=driver)
