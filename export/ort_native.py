"""The native onnxruntime ``GaussPSF`` op (``libgausspsf_ort.so``): find the headers, build, cache, load.

The physics graph's ``GaussPSF`` node (domain ``ai.onnx.contrib``) runs in onnxruntime on the CPU as a C++
custom op compiled from ``export/plugins/gaussPsf``: ``gaussPsfOrt.cpp`` (the onnxruntime C API glue) and
``gaussPsfCpu.h`` (the factorised CPU form of ``gaussPsfMath.h``, the per-pixel math that the CUDA kernel and
the TensorRT plugin run). onnxruntime loads it with ``SessionOptions.register_custom_ops_library(path)``;
its computation runs on onnxruntime's intra-op threads, with no Python in the loop.

Building needs a C++17 compiler (``$CXX``, else ``g++``/``c++``/``clang++``) and the onnxruntime C API header
``onnxruntime_c_api.h`` (API version >= 17), which the onnxruntime wheel does not ship. Looked for in:
``$DAIF_ORT_INCLUDE``; ``<sys.prefix>/include/onnxruntime`` (where ``scripts/install.sh`` puts the headers of
Debian's ``libonnxruntime-dev``); ``/usr/include/onnxruntime`` and ``/usr/local/include/onnxruntime``
(``apt install libonnxruntime-dev`` on Debian 13 / Raspberry Pi OS trixie and later). The CUDA toolkit is not
needed: ``plugins/gaussPsf/nocuda`` supplies the half-precision type ``gaussPsfMath.h`` names.

The library is built on first use into the plugin cache (``export.psf_ext.cache_root()/ort-<key>``; the key
hashes the sources, the compiler, its flags, the headers and the machine), written atomically (a temporary
file renamed into place) under a file lock, so concurrent first uses build once. ``$DAIF_GAUSSPSF_ORT_LIBRARY``
names a prebuilt library instead (e.g. one built on another machine of the same architecture).

The library also exports a C ABI for tests and benchmarks: :func:`cpu_gauss_psf` (the op's own code, on
``threads`` threads) and :func:`reference_gauss_psf` (``gaussPsfMath.h``'s ``forwardPixel`` per pixel).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export.native_lib import check_status, file_lock, load_typed_library

__all__ = [
    "ORT_LIBRARY",
    "ENV_LIBRARY",
    "ENV_INCLUDE",
    "MIN_API_VERSION",
    "NativeOpUnavailable",
    "find_ort_include_dir",
    "ort_header_api_version",
    "find_cxx",
    "build_ort_library",
    "native_library",
    "native_status",
    "load_cpu_library",
    "cpu_gauss_psf",
    "reference_gauss_psf",
]

log = logging.getLogger(__name__)

ORT_LIBRARY = "libgausspsf_ort.so"
ENV_LIBRARY = "DAIF_GAUSSPSF_ORT_LIBRARY"
ENV_INCLUDE = "DAIF_ORT_INCLUDE"
MIN_API_VERSION = 17
"""The onnxruntime C API version the op is written against (``KernelContext_ParallelFor``: onnxruntime 1.17)."""
CPU_ABI_VERSION = 1

SOURCE_DIR = Path(__file__).resolve().parent / "plugins" / "gaussPsf"
SOURCES = ("gaussPsfOrt.cpp", "gaussPsfCpu.h", "gaussPsfMath.h", "nocuda/cuda_fp16.h")
_BASE_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-pthread", "-Wall", "-Wextra")
_HOW_TO_GET_HEADERS = ("run `bash scripts/install.sh` (it fetches the headers of Debian's libonnxruntime-dev into "
                       ".venv/include/onnxruntime), or `sudo apt install libonnxruntime-dev` (Debian 13 / Raspberry "
                       f"Pi OS trixie and later), or set {ENV_INCLUDE} to a folder holding onnxruntime_c_api.h")

_state: dict[str, Any] = {"library": None, "error": None}


class NativeOpUnavailable(RuntimeError):
    """The native op cannot be built or loaded here; the message says what is missing and how to get it."""


# --------------------------------------------------------------------------------------------------
# Tools


def _include_candidates() -> list[Path]:
    out: list[Path] = []
    if os.environ.get(ENV_INCLUDE):
        out.append(Path(os.environ[ENV_INCLUDE]).expanduser())
    out += [Path(sys.prefix) / "include" / "onnxruntime", Path("/usr/include/onnxruntime"),
            Path("/usr/local/include/onnxruntime"), Path("/usr/local/include")]
    return out


def ort_header_api_version(include_dir: Path) -> int:
    """``ORT_API_VERSION`` declared by ``include_dir/onnxruntime_c_api.h`` (0 if it cannot be read)."""
    try:
        text = (include_dir / "onnxruntime_c_api.h").read_text(errors="replace")
    except OSError:
        return 0
    m = re.search(r"#define\s+ORT_API_VERSION\s+(\d+)", text)
    return int(m.group(1)) if m else 0


def find_ort_include_dir() -> Path | None:
    """The first folder holding ``onnxruntime_c_api.h`` with API version >= 17 (see the module doc), or None."""
    for candidate in _include_candidates():
        if (candidate / "onnxruntime_c_api.h").is_file() and ort_header_api_version(candidate) >= MIN_API_VERSION:
            return candidate
    return None


def find_cxx() -> Path | None:
    """A C++ compiler: ``$CXX``, else ``g++``, ``c++`` or ``clang++`` on ``PATH``; None if absent."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    for name in names + ["g++", "c++", "clang++"]:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def _compiler_id(cxx: Path) -> str:
    try:
        out = subprocess.run([str(cxx), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return str(cxx)
    return (out.splitlines() or [str(cxx)])[0]


def _cache_dir() -> Path:
    from export.psf_ext import cache_root

    return cache_root()


def _key(cxx: Path, include_dir: Path, flags: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode())
        digest.update((SOURCE_DIR / name).read_bytes())
    header = include_dir / "onnxruntime_c_api.h"
    digest.update(json.dumps({"cxx": str(cxx), "cxx_id": _compiler_id(cxx), "flags": flags,
                              "include": str(include_dir), "header_size": header.stat().st_size,
                              "machine": platform.machine(), "abi": CPU_ABI_VERSION}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _compile(cxx: Path, include_dir: Path, flags: tuple[str, ...], out: Path, timeout_s: float) -> tuple[bool, str]:
    cmd = [str(cxx), *flags, f"-I{SOURCE_DIR}", f"-I{SOURCE_DIR / 'nocuda'}", f"-I{include_dir}",
           str(SOURCE_DIR / "gaussPsfOrt.cpp"), "-o", str(out)]
    log.debug("compiling: %s", " ".join(cmd))
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
                             check=False)
    except subprocess.TimeoutExpired:
        return False, f"the compiler took more than {timeout_s:.0f} s: {' '.join(cmd)}"
    except OSError as e:
        return False, f"cannot run {cxx}: {e}"
    if res.returncode != 0:
        tail = "\n".join(res.stdout.splitlines()[-25:])
        return False, f"{' '.join(cmd)} failed (exit {res.returncode}):\n{tail}"
    return True, ""


# --------------------------------------------------------------------------------------------------
# Build


def build_ort_library(cache_dir: str | os.PathLike[str] | None = None, *, native_arch: bool = True,
                      timeout_s: float = 600.0) -> Path:
    """Build ``libgausspsf_ort.so`` (or reuse the cached build) and return its path.

    Args:
        cache_dir: where builds are kept (default: ``export.psf_ext.cache_root()``); each build goes to
            ``cache_dir/ort-<key>/``.
        native_arch: compile for this CPU (``-march=native``; dropped if the compiler refuses it). The cache
            key includes the machine type, so a cache shared between different CPUs of one architecture
            should pass ``False``.
        timeout_s: compiler time limit, seconds.

    Raises:
        NativeOpUnavailable: no compiler, no onnxruntime headers, or the compilation failed (with its output).
    """
    cxx = find_cxx()
    if cxx is None:
        raise NativeOpUnavailable("no C++ compiler (g++, c++ or clang++; set CXX): "
                                  "apt install g++ (Raspberry Pi OS: sudo apt install build-essential)")
    include_dir = find_ort_include_dir()
    if include_dir is None:
        looked = ", ".join(str(p) for p in _include_candidates())
        raise NativeOpUnavailable(f"no onnxruntime C API headers (onnxruntime_c_api.h, API >= {MIN_API_VERSION}) "
                                  f"in {looked}; {_HOW_TO_GET_HEADERS}")
    root = Path(cache_dir) if cache_dir is not None else _cache_dir()
    variants = [_BASE_FLAGS + ("-march=native",), _BASE_FLAGS] if native_arch else [_BASE_FLAGS]
    errors: list[str] = []
    for flags in variants:
        key = _key(cxx, include_dir, flags)
        folder = root / f"ort-{key}"
        lib = folder / ORT_LIBRARY
        if lib.is_file():
            return lib
        with file_lock(folder / ".lock"):
            if lib.is_file():  # built by another process while this one waited
                return lib
            log.info("building %s with %s (onnxruntime headers %s)", ORT_LIBRARY, cxx.name, include_dir)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{ORT_LIBRARY}.", suffix=".tmp", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                ok, message = _compile(cxx, include_dir, flags, tmp, timeout_s)
                if ok:
                    os.chmod(tmp, 0o755)
                    os.replace(tmp, lib)
                    from model.atomic import atomic_write_json

                    atomic_write_json(folder / "build.json", {
                        "library": ORT_LIBRARY, "compiler": str(cxx), "compiler_id": _compiler_id(cxx),
                        "flags": list(flags), "onnxruntime_include": str(include_dir),
                        "header_api_version": ort_header_api_version(include_dir),
                        "machine": platform.machine(), "sources": list(SOURCES)})
                    return lib
                errors.append(message)
            finally:
                tmp.unlink(missing_ok=True)
    raise NativeOpUnavailable("building the native GaussPSF op failed: " + "\n".join(errors))


def native_library(build: bool = True) -> Path:
    """The native op library for this process: ``$DAIF_GAUSSPSF_ORT_LIBRARY``, else the cached build (built now
    when ``build``). The answer (or the failure) is remembered for the process.

    Raises:
        NativeOpUnavailable: with the reason and the fix (the caller decides whether to fall back).
    """
    if _state["library"] is not None:
        return _state["library"]
    if _state["error"] is not None and build:
        raise NativeOpUnavailable(_state["error"])
    explicit = os.environ.get(ENV_LIBRARY)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise NativeOpUnavailable(f"{ENV_LIBRARY}={explicit}: no such file (unset it to build the op here)")
        _state["library"] = path
        return path
    try:
        import onnxruntime as ort

        major, minor = (int(v) for v in ort.__version__.split(".")[:2])
    except (ImportError, ValueError):
        major, minor = 1, MIN_API_VERSION
    if (major, minor) < (1, MIN_API_VERSION):
        message = f"onnxruntime {major}.{minor} is older than 1.{MIN_API_VERSION}: pip install -U onnxruntime"
        _state["error"] = message
        raise NativeOpUnavailable(message)
    if not build:
        raise NativeOpUnavailable("not built yet")
    try:
        path = build_ort_library()
    except NativeOpUnavailable as e:
        _state["error"] = str(e)
        raise
    _state["library"] = path
    return path


def native_status() -> tuple[Path | None, str]:
    """``(library path, "")`` when the native op is usable (building it if needed), else ``(None, reason)``."""
    try:
        return native_library(), ""
    except NativeOpUnavailable as e:
        return None, str(e)


def _reset_for_tests() -> None:
    _state["library"] = None
    _state["error"] = None


# --------------------------------------------------------------------------------------------------
# C ABI (tests, benchmarks)

_cpu_cache: dict[Path, ctypes.CDLL] = {}


def load_cpu_library(path: str | os.PathLike[str] | None = None) -> ctypes.CDLL:
    """The op library's C ABI through ctypes (``path`` default: :func:`native_library`)."""
    f32 = ctypes.POINTER(ctypes.c_float)
    i32, i64 = ctypes.c_int32, ctypes.c_int64
    prototypes = {
        "gpsf_cpu_abi_version": (i32, []),
        "gpsf_cpu_last_error": (ctypes.c_char_p, []),
        "gpsf_cpu_forward_f32": (i32, [f32, f32, f32, i64, i32, i32, i32, i32, i32]),
        "gpsf_cpu_reference_f32": (i32, [f32, f32, f32, i64, i32, i32, i32, i32]),
    }
    return load_typed_library(Path(path) if path is not None else native_library(), prototypes,
                              "gpsf_cpu_abi_version", CPU_ABI_VERSION, NativeOpUnavailable, _cpu_cache)


def _prepare(image: np.ndarray, sigma: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.ascontiguousarray(image, dtype=np.float32)
    s = np.ascontiguousarray(sigma, dtype=np.float32)
    if x.ndim != 4 or s.shape != (x.shape[0], 1) + x.shape[2:]:
        raise ValueError(f"image must be (N, C, H, W) and sigma (N, 1, H, W), got {x.shape} and {s.shape}")
    if isinstance(radius, bool) or int(radius) != radius:
        raise ValueError(f"radius must be an integer number of pixels, got {radius!r}")
    return x, s, int(radius)


def _call(lib: ctypes.CDLL, fn: Any, *args: Any) -> None:
    check_status(fn(*args), lib, "gpsf_cpu_last_error")


def cpu_gauss_psf(image: np.ndarray, sigma: np.ndarray, radius: int, threads: int = 1,
                  lib: ctypes.CDLL | None = None) -> np.ndarray:
    """The native op's computation: ``image (N, C, H, W)``, ``sigma (N, 1, H, W)`` pixels -> ``(N, C, H, W)``
    float32, on ``threads`` threads (the result does not depend on it).

    Raises ``ValueError`` for bad shapes or a radius outside ``[0, 64]``; :class:`NativeOpUnavailable`.
    """
    x, s, r = _prepare(image, sigma, radius)
    lib = lib or load_cpu_library()
    out = np.empty_like(x)
    f32 = ctypes.POINTER(ctypes.c_float)
    n, c, h, w = x.shape
    _call(lib, lib.gpsf_cpu_forward_f32, x.ctypes.data_as(f32), s.ctypes.data_as(f32), out.ctypes.data_as(f32),
          n, c, h, w, r, max(1, int(threads)))
    return out


def reference_gauss_psf(image: np.ndarray, sigma: np.ndarray, radius: int, lib: ctypes.CDLL | None = None) -> np.ndarray:
    """``gaussPsfMath.h``'s ``forwardPixel`` (the CUDA kernel's per-pixel code) on every pixel, one thread
    (slow: ``(2R+1)^2`` exponentials per pixel). Same contract as :func:`cpu_gauss_psf`."""
    x, s, r = _prepare(image, sigma, radius)
    lib = lib or load_cpu_library()
    out = np.empty_like(x)
    f32 = ctypes.POINTER(ctypes.c_float)
    n, c, h, w = x.shape
    _call(lib, lib.gpsf_cpu_reference_f32, x.ctypes.data_as(f32), s.ctypes.data_as(f32), out.ctypes.data_as(f32),
          n, c, h, w, r)
    return out
