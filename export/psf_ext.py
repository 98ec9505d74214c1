"""Build and load the native GaussPSF code: TensorRT plugin, CPU library and PyTorch CUDA extension.

The sources live in ``export/plugins/gaussPsf`` (see its README). Three products:

* ``libgausspsf_trt.so`` - the TensorRT 10 ``IPluginV3`` plugin ``GaussPSF`` v1:
  :func:`build_plugin` runs CMake + nvcc and returns its path (load it with
  ``trt.get_plugin_registry().load_library(path)`` or ``trtexec --dynamicPlugins=path``).
* ``libgausspsf_host.so`` - the kernel's per-pixel math compiled for the CPU (C ABI):
  :func:`load_host_library` returns a ``ctypes.CDLL``; :func:`host_gauss_psf` /
  :func:`host_gauss_psf_backward` wrap it for NumPy, :func:`gauss_psf_host` for autograd on CPU tensors.
* a PyTorch CUDA extension (``torch.utils.cpp_extension.load``) for GPU training:
  :func:`gauss_psf_cuda` is an autograd function with the same math as ``model.render.gauss_psf``.

Builds go to a cache folder keyed by a hash of the sources and options (``$DAIF_PLUGIN_CACHE``, else
``$XDG_CACHE_HOME/daif/plugins``, else ``~/.cache/daif/plugins``), so a rebuild happens only when
something changed; concurrent builds of the same key wait on a file lock.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

# the renderer's window constants and radius rule, from their torch-free home (this module must load without torch)
from export.native_lib import check_status, file_lock, load_typed_library
from model.psf_window import MAX_RADIUS_PX as MAX_RADIUS
from model.psf_window import MIN_SIGMA_PX, psf_window_radius

if TYPE_CHECKING:  # torch is imported lazily: a Jetson runtime may load the plugin without it
    import torch

__all__ = [
    "PLUGIN_NAME",
    "PLUGIN_VERSION",
    "PLUGIN_NAMESPACE",
    "MAX_RADIUS",
    "MIN_SIGMA_PX",
    "DEFAULT_CUDA_ARCHS",
    "PluginBuildError",
    "BuildConfig",
    "cache_root",
    "find_nvcc",
    "find_cmake",
    "find_cuda_include_dir",
    "find_tensorrt_include_dir",
    "missing_build_tools",
    "build",
    "build_plugin",
    "build_host_library",
    "load_host_library",
    "host_gauss_psf",
    "host_gauss_psf_backward",
    "window_radius",
    "load_torch_extension",
    "gauss_psf_cuda",
    "gauss_psf_host",
]

log = logging.getLogger(__name__)

PLUGIN_SOURCE_DIR = Path(__file__).resolve().parent / "plugins"
GAUSS_PSF_DIR = PLUGIN_SOURCE_DIR / "gaussPsf"
PLUGIN_LIBRARY = "libgausspsf_trt.so"
PLUGIN_LIBRARY_TRT8 = "libgausspsf_trt8.so"
HOST_LIBRARY = "libgausspsf_host.so"
CHECK_PROGRAM = "gausspsf_plugin_check"

PLUGIN_NAME = "GaussPSF"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
DEFAULT_CUDA_ARCHS = "75;80;86;87;89;90"
HOST_ABI_VERSION = 1

_SOURCE_SUFFIXES = {".h", ".cu", ".cpp", ".txt"}
_STAMP = "daif-build.json"


class PluginBuildError(RuntimeError):
    """The native code could not be built or loaded; the message says what is missing or what failed."""


@dataclass(frozen=True)
class BuildConfig:
    """Options of one CMake build of ``export/plugins``.

    ``build_dir`` None builds into the cache (``cache_root()/<hash>``). ``cuda_archs`` is a
    ``CMAKE_CUDA_ARCHITECTURES`` list such as ``"87"`` (Jetson Orin) or ``"75;80;86;87;89;90"``.
    ``trt_include_dir`` None finds the TensorRT headers (see :func:`find_tensorrt_include_dir`).
    ``trt8`` builds ``libgausspsf_trt8.so``, the TensorRT 8.5 ``IPluginV2DynamicExt`` variant (JetPack 5),
    against ``trt8_include_dir`` (default: ``trt_include_dir``) and ``nvinfer_library`` (default: found).
    """

    plugin: bool = True
    host: bool = True
    checks: bool = False
    trt8: bool = False
    cuda_archs: str = DEFAULT_CUDA_ARCHS
    trt_include_dir: Path | None = None
    trt8_include_dir: Path | None = None
    nvinfer_library: Path | None = None
    build_dir: Path | None = None
    jobs: int | None = None
    timeout_s: float = 3600.0

    def validate(self) -> None:
        """Raise ``ValueError`` for options that cannot work."""
        if not (self.plugin or self.host or self.checks or self.trt8):
            raise ValueError("nothing to build: enable plugin, host, checks or trt8")
        if self.checks and not (self.plugin and self.host):
            raise ValueError("checks need both the plugin and the host library")
        archs = [a for a in self.cuda_archs.split(";") if a]
        if (self.plugin or self.trt8) and not archs:
            raise ValueError("cuda_archs is empty")
        for arch in archs:
            digits = arch.split("-")[0].rstrip("af")
            if not digits.isdigit():
                raise ValueError(f"bad CUDA architecture {arch!r} in {self.cuda_archs!r} (example: '87' or '75;87')")
            if int(digits) < 75:
                raise ValueError(f"CUDA architecture {arch} is below 75, which nvcc 13 no longer targets")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")


# --------------------------------------------------------------------------------------------------
# Tool discovery


def cache_root() -> Path:
    """Folder for cached builds: ``$DAIF_PLUGIN_CACHE`` or ``$XDG_CACHE_HOME/daif/plugins`` (``~/.cache``)."""
    env = os.environ.get("DAIF_PLUGIN_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "daif" / "plugins"


def _cuda_roots() -> list[Path]:
    roots = [Path(os.environ[k]) for k in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(k)]
    return roots + [Path("/usr/local/cuda")]


def find_nvcc() -> Path | None:
    """nvcc from ``$CUDACXX``, ``$CUDA_HOME/bin``, ``/usr/local/cuda/bin`` or ``PATH``; None if absent."""
    candidates = [Path(os.environ["CUDACXX"])] if os.environ.get("CUDACXX") else []
    candidates += [root / "bin" / "nvcc" for root in _cuda_roots()]
    which = shutil.which("nvcc")
    if which:
        candidates.append(Path(which))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_cmake() -> Path | None:
    """cmake on ``PATH`` (the ``cmake`` wheel's too), None if absent."""
    which = shutil.which("cmake") or shutil.which("cmake", path=str(Path(sys.executable).parent))
    return Path(which) if which else None


def find_cuda_include_dir() -> Path | None:
    """The CUDA toolkit's include folder (holding ``cuda_fp16.h``), None if absent."""
    roots = _cuda_roots()
    nvcc = find_nvcc()
    if nvcc is not None:
        roots.append(nvcc.resolve().parent.parent)
    for root in roots:
        if (root / "include" / "cuda_fp16.h").is_file():
            return root / "include"
    return None


def find_tensorrt_include_dir() -> Path | None:
    """Folder holding TensorRT's ``NvInferRuntime.h``, None if absent.

    Order: ``$TRT_INCLUDE_DIR``; the ``kernel-lens`` wheel (``kernel_lens/include/tensorrt``, found
    without importing it); ``/usr/include/<arch>-linux-gnu`` and ``/usr/include`` (JetPack).
    """
    candidates: list[Path] = []
    if os.environ.get("TRT_INCLUDE_DIR"):
        candidates.append(Path(os.environ["TRT_INCLUDE_DIR"]))
    spec = importlib.util.find_spec("kernel_lens")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "include" / "tensorrt" for p in spec.submodule_search_locations]
    candidates += [Path("/usr/include/aarch64-linux-gnu"), Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include")]
    for candidate in candidates:
        if (candidate / "NvInferRuntime.h").is_file():
            return candidate
    return None


def missing_build_tools(plugin: bool = True) -> list[str]:
    """What is missing to build (the plugin if ``plugin``, else the host library): empty if nothing."""
    missing = []
    if find_cmake() is None:
        missing.append("cmake (apt install cmake, or pip install cmake)")
    if find_cuda_include_dir() is None:
        missing.append("CUDA toolkit headers (cuda_fp16.h; set CUDA_HOME)")
    if plugin:
        if find_nvcc() is None:
            missing.append("nvcc (CUDA toolkit; set CUDA_HOME or CUDACXX)")
        if find_tensorrt_include_dir() is None:
            missing.append("TensorRT headers (pip install --no-deps kernel-lens==2.0.1, or set TRT_INCLUDE_DIR)")
    return missing


# --------------------------------------------------------------------------------------------------
# Build


def _source_files() -> list[Path]:
    return sorted(p for p in PLUGIN_SOURCE_DIR.rglob("*") if p.is_file() and p.suffix in _SOURCE_SUFFIXES)


def _build_key(config: BuildConfig, tools: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(str(path.relative_to(PLUGIN_SOURCE_DIR)).encode())
        digest.update(path.read_bytes())
    options = {k: v for k, v in asdict(config).items() if k not in ("build_dir", "jobs", "timeout_s")}
    digest.update(json.dumps({"options": options, "tools": tools}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _products(config: BuildConfig) -> list[str]:
    names = []
    if config.plugin:
        names.append(PLUGIN_LIBRARY)
    if config.trt8:
        names.append(PLUGIN_LIBRARY_TRT8)
    if config.host:
        names.append(HOST_LIBRARY)
    if config.checks:
        names.append(CHECK_PROGRAM)
    return names


def _run(cmd: list[str], cwd: Path, timeout_s: float, what: str) -> None:
    log.debug("running %s", " ".join(cmd))
    try:
        result = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PluginBuildError(f"{what} timed out after {timeout_s:.0f} s: {' '.join(cmd)}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise PluginBuildError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")


def build(config: BuildConfig = BuildConfig()) -> Path:
    """Configure and build ``export/plugins`` with CMake; returns the build folder.

    Reuses a finished build with the same sources and options. Raises ``PluginBuildError`` naming the
    missing tool (cmake, nvcc, CUDA or TensorRT headers) or carrying the tail of the compiler output.
    """
    config.validate()
    needs_nvcc = config.plugin or config.trt8
    missing = missing_build_tools(plugin=needs_nvcc)
    if missing:
        raise PluginBuildError("cannot build the GaussPSF native code, missing: " + "; ".join(missing))
    cmake = find_cmake()
    nvcc = find_nvcc()
    cuda_include = find_cuda_include_dir()
    if cmake is None or cuda_include is None:  # checked above; kept for type narrowing
        raise PluginBuildError("cmake or the CUDA headers disappeared during the build")
    trt_include = config.trt_include_dir or (find_tensorrt_include_dir() if needs_nvcc else None)
    needs_trt = config.plugin or (config.trt8 and config.trt8_include_dir is None)
    if needs_trt and (trt_include is None or not (Path(trt_include) / "NvInferRuntime.h").is_file()):
        raise PluginBuildError(f"no NvInferRuntime.h in {trt_include}")
    tools = {"cmake": str(cmake), "nvcc": str(nvcc), "cuda_include": str(cuda_include), "trt": str(trt_include)}
    key = _build_key(config, tools)
    build_dir = Path(config.build_dir) if config.build_dir is not None else cache_root() / key
    stamp = build_dir / _STAMP
    with file_lock(build_dir.parent / f".{build_dir.name}.lock"):
        if stamp.is_file() and all((build_dir / name).is_file() for name in _products(config)):
            try:
                if json.loads(stamp.read_text()).get("key") == key:
                    return build_dir
            except (OSError, ValueError):
                pass
        build_dir.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        cuda_root = cuda_include.parent
        configure = [
            str(cmake), "-S", str(PLUGIN_SOURCE_DIR), "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DGAUSSPSF_BUILD_PLUGIN={'ON' if config.plugin else 'OFF'}",
            f"-DGAUSSPSF_BUILD_HOST={'ON' if config.host else 'OFF'}",
            f"-DGAUSSPSF_BUILD_CHECKS={'ON' if config.checks else 'OFF'}",
            f"-DGAUSSPSF_BUILD_TRT8={'ON' if config.trt8 else 'OFF'}",
            f"-DGAUSSPSF_CUDA_ARCHS={config.cuda_archs}",
            f"-DCMAKE_CUDA_ARCHITECTURES={config.cuda_archs}",
            f"-DGAUSSPSF_PYTHON={sys.executable}",
            f"-DCUDAToolkit_ROOT={cuda_root}",
        ]
        if needs_nvcc:
            configure += [f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DTRT_INCLUDE_DIR={trt_include}"]
        if config.trt8_include_dir is not None:
            configure.append(f"-DTRT8_INCLUDE_DIR={config.trt8_include_dir}")
        if config.nvinfer_library is not None:
            configure.append(f"-DGAUSSPSF_NVINFER_LIBRARY={config.nvinfer_library}")
        what = ", ".join(_products(config))
        log.info("building %s (CUDA archs %s) in %s", what, config.cuda_archs if needs_nvcc else "-", build_dir)
        _run(configure, build_dir, config.timeout_s, "CMake configure")
        jobs = config.jobs or max(1, min(os.cpu_count() or 1, 8))
        _run([str(cmake), "--build", str(build_dir), "-j", str(jobs)], build_dir, config.timeout_s, "CMake build")
        for name in _products(config):
            if not (build_dir / name).is_file():
                raise PluginBuildError(f"the build finished but {build_dir / name} is missing")
        from model.atomic import atomic_write_json

        record = json.loads(json.dumps({"key": key, "config": asdict(config), "tools": tools}, default=str))
        atomic_write_json(stamp, record)
    return build_dir


def build_plugin(build_dir: str | os.PathLike[str] | None = None, *, cuda_archs: str = DEFAULT_CUDA_ARCHS,
                 trt_include_dir: str | os.PathLike[str] | None = None, checks: bool = False) -> Path:
    """Build the TensorRT plugin (and the host library); returns the path of ``libgausspsf_trt.so``.

    ``cuda_archs``: ``"87"`` for Jetson Orin only (fast), the default covers Turing to Hopper.
    Raises ``PluginBuildError`` when nvcc, cmake or the headers are missing or the build fails.
    """
    config = BuildConfig(plugin=True, host=True, checks=checks, cuda_archs=cuda_archs,
                         trt_include_dir=None if trt_include_dir is None else Path(trt_include_dir),
                         build_dir=None if build_dir is None else Path(build_dir))
    return build(config) / PLUGIN_LIBRARY


def build_host_library(build_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build only ``libgausspsf_host.so`` (needs cmake, a C++17 compiler and the CUDA headers, not nvcc)."""
    config = BuildConfig(plugin=False, host=True, build_dir=None if build_dir is None else Path(build_dir))
    return build(config) / HOST_LIBRARY


# --------------------------------------------------------------------------------------------------
# Host (CPU) library

_host_cache: dict[Path, ctypes.CDLL] = {}


def load_host_library(path: str | os.PathLike[str] | None = None) -> ctypes.CDLL:
    """Load ``libgausspsf_host.so`` (building it on demand when ``path`` is None) with typed functions.

    The handle exposes ``gpsf_host_forward_f32``, ``gpsf_host_forward_f16``, ``gpsf_host_backward_f32``,
    ``gpsf_host_last_error``, ``gpsf_host_max_radius`` and ``gpsf_host_abi_version`` (see gaussPsfHost.h).
    """
    f32 = ctypes.POINTER(ctypes.c_float)
    u16 = ctypes.POINTER(ctypes.c_uint16)
    i32 = ctypes.c_int32
    prototypes = {
        "gpsf_host_abi_version": (i32, []),
        "gpsf_host_max_radius": (i32, []),
        "gpsf_host_last_error": (ctypes.c_char_p, []),
        "gpsf_host_forward_f32": (i32, [f32, f32, f32, i32, i32, i32, i32, i32]),
        "gpsf_host_forward_f16": (i32, [u16, u16, u16, i32, i32, i32, i32, i32]),
        "gpsf_host_backward_f32": (i32, [f32, f32, f32, f32, f32, i32, i32, i32, i32, i32]),
    }
    return load_typed_library(Path(path) if path is not None else build_host_library(), prototypes,
                              "gpsf_host_abi_version", HOST_ABI_VERSION, PluginBuildError, _host_cache)


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)):
        raise TypeError(f"radius must be an int, got {type(radius).__name__}")
    if not 0 <= int(radius) <= MAX_RADIUS:
        raise ValueError(f"radius must be in [0, {MAX_RADIUS}], got {radius}")
    return int(radius)


def _check_shapes(image_shape: tuple[int, ...], sigma_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(image_shape) != 4:
        raise ValueError(f"image must be (N, C, H, W), got shape {tuple(image_shape)}")
    n, c, h, w = (int(v) for v in image_shape)
    if tuple(int(v) for v in sigma_shape) != (n, 1, h, w):
        raise ValueError(f"sigma must be (N, 1, H, W) = {(n, 1, h, w)}, got {tuple(sigma_shape)}")
    if c < 1 or h < 1 or w < 1:
        raise ValueError(f"image must have C, H, W >= 1, got {tuple(image_shape)}")
    if c * h * w >= 2**31 or n >= 2**31:
        raise ValueError(f"image {tuple(image_shape)} is too large for int32 indexing")
    return n, c, h, w


def _host_call(lib: ctypes.CDLL, fn: Any, *args: Any) -> None:
    check_status(fn(*args), lib, "gpsf_host_last_error", "libgausspsf_host: ")


def _ptr(array: np.ndarray, ctype: Any) -> Any:
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def host_gauss_psf(image: np.ndarray, sigma: np.ndarray, radius: int, lib: ctypes.CDLL | None = None) -> np.ndarray:
    """Gather-form Gaussian PSF on the CPU through the kernel's own math.

    ``image (N, C, H, W)``, ``sigma (N, 1, H, W)`` in pixels, both float32 (fp32 path) or both float16
    (fp16 storage with fp32 accumulation, as the CUDA fp16 path); returns ``(N, C, H, W)`` of that dtype.
    Raises ``TypeError`` for other dtypes and ``ValueError`` for bad shapes or radius.
    """
    radius = _check_radius(radius)
    image = np.asarray(image)
    sigma = np.asarray(sigma)
    if image.dtype != sigma.dtype or image.dtype not in (np.float32, np.float16):
        raise TypeError(f"image and sigma must both be float32 or both float16, got {image.dtype} and {sigma.dtype}")
    n, c, h, w = _check_shapes(image.shape, sigma.shape)
    lib = lib or load_host_library()
    image = np.ascontiguousarray(image)
    sigma = np.ascontiguousarray(sigma)
    out = np.empty_like(image)
    if image.dtype == np.float32:
        _host_call(lib, lib.gpsf_host_forward_f32, _ptr(image, ctypes.c_float), _ptr(sigma, ctypes.c_float),
                   _ptr(out, ctypes.c_float), n, c, h, w, radius)
    else:
        _host_call(lib, lib.gpsf_host_forward_f16, _ptr(image.view(np.uint16), ctypes.c_uint16),
                   _ptr(sigma.view(np.uint16), ctypes.c_uint16), _ptr(out.view(np.uint16), ctypes.c_uint16),
                   n, c, h, w, radius)
    return out


def host_gauss_psf_backward(image: np.ndarray, sigma: np.ndarray, grad_output: np.ndarray, radius: int,
                            lib: ctypes.CDLL | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(d image (N, C, H, W), d sigma (N, 1, H, W))`` of :func:`host_gauss_psf`, float32."""
    radius = _check_radius(radius)
    image = np.ascontiguousarray(image, dtype=np.float32)
    sigma = np.ascontiguousarray(sigma, dtype=np.float32)
    grad_output = np.ascontiguousarray(grad_output, dtype=np.float32)
    n, c, h, w = _check_shapes(image.shape, sigma.shape)
    if grad_output.shape != image.shape:
        raise ValueError(f"grad_output shape {grad_output.shape} differs from image shape {image.shape}")
    lib = lib or load_host_library()
    grad_image = np.empty_like(image)
    grad_sigma = np.empty_like(sigma)
    _host_call(lib, lib.gpsf_host_backward_f32, _ptr(image, ctypes.c_float), _ptr(sigma, ctypes.c_float),
               _ptr(grad_output, ctypes.c_float), _ptr(grad_image, ctypes.c_float), _ptr(grad_sigma, ctypes.c_float),
               n, c, h, w, radius)
    return grad_image, grad_sigma


def window_radius(max_sigma_px: float) -> int:
    """``ceil(3 * sqrt(max_sigma^2 + MIN_SIGMA_PX^2))``, at least 1: :func:`model.psf_window.psf_window_radius`
    (``model.render``'s rule). Raises ``ValueError`` for a non-finite or negative blur."""
    return psf_window_radius(max_sigma_px)


# --------------------------------------------------------------------------------------------------
# PyTorch: CUDA extension and autograd


class _Backend(Protocol):
    def forward(self, image: "torch.Tensor", sigma: "torch.Tensor", radius: int) -> "torch.Tensor": ...

    def backward(self, image: "torch.Tensor", sigma: "torch.Tensor", grad_output: "torch.Tensor",
                 radius: int) -> "list[torch.Tensor]": ...


_torch_ext: Any = None


def load_torch_extension(verbose: bool = False) -> Any:
    """Compile (once, cached) and import the PyTorch CUDA extension of the kernels.

    Needs a CUDA build of PyTorch, a GPU and nvcc. Raises ``PluginBuildError`` saying which is missing.
    """
    global _torch_ext
    if _torch_ext is not None:
        return _torch_ext
    import torch

    if torch.version.cuda is None:
        raise PluginBuildError("this PyTorch has no CUDA support (CPU build); gauss_psf_cuda needs a CUDA build")
    if not torch.cuda.is_available():
        raise PluginBuildError("no CUDA GPU is available to PyTorch")
    nvcc = find_nvcc()
    if nvcc is None:
        raise PluginBuildError("nvcc not found: install the CUDA toolkit and set CUDA_HOME")
    from torch.utils import cpp_extension

    sources = [GAUSS_PSF_DIR / "gaussPsfTorch.cpp", GAUSS_PSF_DIR / "gaussPsfKernel.cu"]
    digest = hashlib.sha256()
    for path in sources + [GAUSS_PSF_DIR / "gaussPsfKernel.h", GAUSS_PSF_DIR / "gaussPsfMath.h"]:
        digest.update(path.read_bytes())
    digest.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}".encode())
    key = digest.hexdigest()[:12]
    build_dir = cache_root() / f"torch-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    os.environ.setdefault("CUDA_HOME", str(nvcc.resolve().parent.parent))
    try:
        _torch_ext = cpp_extension.load(
            name=f"daif_gauss_psf_{key}", sources=[str(s) for s in sources], extra_include_paths=[str(GAUSS_PSF_DIR)],
            extra_cflags=["-O3"], extra_cuda_cflags=["-O3"], build_directory=str(build_dir), verbose=verbose)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        raise PluginBuildError(f"building the PyTorch CUDA extension failed: {exc}") from exc
    return _torch_ext


class _HostBackend:
    """CPU tensors through libgausspsf_host (float32 forward/backward, float16 forward)."""

    def __init__(self) -> None:
        self.lib = load_host_library()

    def forward(self, image: "torch.Tensor", sigma: "torch.Tensor", radius: int) -> "torch.Tensor":
        import torch

        out = host_gauss_psf(image.detach().contiguous().numpy(), sigma.detach().contiguous().numpy(), radius,
                             lib=self.lib)
        return torch.from_numpy(out)

    def backward(self, image: "torch.Tensor", sigma: "torch.Tensor", grad_output: "torch.Tensor",
                 radius: int) -> "list[torch.Tensor]":
        import torch

        gi, gs = host_gauss_psf_backward(image.detach().numpy(), sigma.detach().numpy(),
                                         grad_output.detach().numpy(), radius, lib=self.lib)
        return [torch.from_numpy(gi), torch.from_numpy(gs)]


_function_class: Any = None


def _gauss_psf_function() -> Any:
    """The autograd Function (created on first use so that importing this module does not import torch)."""
    global _function_class
    if _function_class is not None:
        return _function_class
    import torch

    class GaussPsfFunction(torch.autograd.Function):
        """Forward in the image dtype (fp32 or fp16, fp32 accumulation); backward in fp32."""

        @staticmethod
        def forward(ctx: Any, image: torch.Tensor, sigma: torch.Tensor, radius: int, backend: _Backend) -> torch.Tensor:
            ctx.radius = radius
            ctx.backend = backend
            ctx.save_for_backward(image, sigma)
            return backend.forward(image, sigma.to(image.dtype), radius)

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
            image, sigma = ctx.saved_tensors
            grad_image, grad_sigma = ctx.backend.backward(image.float().contiguous(), sigma.float().contiguous(),
                                                          grad_output.float().contiguous(), ctx.radius)
            return (grad_image.to(image.dtype) if ctx.needs_input_grad[0] else None,
                    grad_sigma.to(sigma.dtype) if ctx.needs_input_grad[1] else None, None, None)

    _function_class = GaussPsfFunction
    return _function_class


def _validate_tensors(image: "torch.Tensor", sigma: "torch.Tensor", radius: int | None) -> int:
    import torch

    if not isinstance(image, torch.Tensor) or not isinstance(sigma, torch.Tensor):
        raise TypeError("image and sigma must be torch tensors")
    if image.dtype not in (torch.float32, torch.float16):
        raise TypeError(f"image must be float32 or float16, got {image.dtype}")
    if not sigma.dtype.is_floating_point:
        raise TypeError(f"sigma must be a floating tensor, got {sigma.dtype}")
    if image.device != sigma.device:
        raise ValueError(f"image on {image.device} and sigma on {sigma.device}")
    _check_shapes(tuple(image.shape), tuple(sigma.shape))
    # Same value contract as model.render.gauss_psf (the kernels themselves only use sigma^2).
    finite = torch.isfinite(sigma.detach())
    if not bool(finite.all()):
        raise ValueError(f"sigma has {int((~finite).sum())} non-finite values (NaN or inf); blur must be finite pixels")
    if bool((sigma.detach() < 0).any()):
        raise ValueError(f"sigma has negative values (min {float(sigma.detach().min()):g} px); blur must be >= 0 pixels")
    if radius is None:
        radius = window_radius(float(sigma.detach().max())) if sigma.numel() else 1
        if radius > MAX_RADIUS:
            raise ValueError(f"the largest blur ({float(sigma.detach().max()):.3g} px) needs a radius-{radius} window, "
                             f"above the supported {MAX_RADIUS}; pass radius <= {MAX_RADIUS} to truncate the PSF")
    return _check_radius(radius)


def gauss_psf_cuda(image: "torch.Tensor", sigma: "torch.Tensor", radius: int | None = None) -> "torch.Tensor":
    """Spatially varying Gaussian PSF (gather form) on the GPU with autograd; math of ``model.render.gauss_psf``.

    ``image (N, C, H, W)`` float32 or float16 CUDA tensor, ``sigma (N, 1, H, W)`` in pixels on the same device
    (cast to the image dtype for the forward), ``radius`` the window half-size in pixels (``None``:
    ``ceil(3 * max s_eff)``), at most 64. Returns ``(N, C, H, W)`` in the image dtype; gradients are fp32 inside.
    Raises ``TypeError``/``ValueError`` for bad inputs, ``PluginBuildError`` if the extension cannot be built.
    """
    radius = _validate_tensors(image, sigma, radius)
    if not image.is_cuda:
        raise ValueError("gauss_psf_cuda needs CUDA tensors; use gauss_psf_host or model.render.gauss_psf on the CPU")
    return _gauss_psf_function().apply(image, sigma, radius, load_torch_extension())


_host_backend: _HostBackend | None = None


def gauss_psf_host(image: "torch.Tensor", sigma: "torch.Tensor", radius: int | None = None) -> "torch.Tensor":
    """:func:`gauss_psf_cuda` on CPU tensors through libgausspsf_host (a slow, single-threaded reference)."""
    global _host_backend
    radius = _validate_tensors(image, sigma, radius)
    if image.device.type != "cpu":
        raise ValueError(f"gauss_psf_host needs CPU tensors, got {image.device}")
    if _host_backend is None:
        _host_backend = _HostBackend()
    return _gauss_psf_function().apply(image, sigma, radius, _host_backend)
