"""GaussPSF native code: CPU library vs references, TensorRT plugin interfaces, lean-runtime loading, CUDA (gpu).

The build (CMake + nvcc, one CUDA architecture) runs once per test session and is cached by source
hash (``export.psf_ext``); tests skip with the missing tool named when nvcc, cmake or the headers
are absent. The CPU library tests need no nvcc: they build the host library alone (CMake and the host
C++ compiler, with the CUDA headers for ``cuda_fp16.h``), and skip only when those are missing.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from export import psf_ext
from export.psf_ext import MIN_SIGMA_PX, BuildConfig, PluginBuildError
from model import render  # the renderer the native code must match: a broken import fails, never skips

REPO = Path(__file__).resolve().parents[2]
TEST_ARCHS = "75"  # one architecture keeps the test build to seconds


# --------------------------------------------------------------------------------------------------
# References


def reference_gauss_psf(image: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """The ARCHITECTURE.md formula, written independently of the kernel (float64, differentiable)."""
    n, c, h, w = image.shape
    s2 = sigma[:, 0] ** 2 + MIN_SIGMA_PX**2
    num = torch.zeros_like(image)
    den = torch.zeros((n, h, w), dtype=image.dtype)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            # Output pixels p = (y, x) whose neighbour q = (y + dy, x + dx) lies inside the image.
            y0, y1 = max(0, -dy), min(h, h - dy)
            x0, x1 = max(0, -dx), min(w, w - dx)
            if y0 >= y1 or x0 >= x1:
                continue
            sq = s2[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            weight = torch.exp(-(dy * dy + dx * dx) / (2.0 * sq)) / sq
            pad = (x0, w - x1, y0, h - y1)
            num = num + torch.nn.functional.pad(weight[:, None] * image[:, :, y0 + dy:y1 + dy, x0 + dx:x1 + dx], pad)
            den = den + torch.nn.functional.pad(weight, pad)
    return num / den[:, None]


def random_inputs(shape: tuple[int, int, int, int], seed: int = 0, max_sigma: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    image = rng.random(shape).astype(np.float32)
    sigma = (rng.random((n, 1, h, w)) * max_sigma).astype(np.float32)
    sigma[..., 0, 0] = 0.0          # the floor s_eff = 0.25 px
    sigma[..., -1, -1] *= -1.0      # only sigma^2 matters
    return image, sigma


CASES = [
    ((2, 3, 9, 11), 3),   # RGB, window cut at every border
    ((1, 5, 7, 6), 2),    # C > 4: two channel chunks
    ((1, 1, 5, 4), 0),    # radius 0: identity
    ((1, 2, 6, 7), 12),   # window larger than the image
]


# --------------------------------------------------------------------------------------------------
# Build fixture


@pytest.fixture(scope="session")
def build_dir() -> Path:
    missing = psf_ext.missing_build_tools(plugin=True)
    if missing:
        pytest.skip("cannot build the GaussPSF plugin here, missing: " + "; ".join(missing))
    try:
        return psf_ext.build(BuildConfig(plugin=True, host=True, checks=True, cuda_archs=TEST_ARCHS))
    except PluginBuildError as exc:
        pytest.fail(f"GaussPSF build failed: {exc}")


@pytest.fixture(scope="session")
def host_build_dir() -> Path:
    """The CPU library alone (no nvcc, no TensorRT headers needed)."""
    missing = psf_ext.missing_build_tools(plugin=False)
    if missing:
        pytest.skip("cannot build the GaussPSF CPU library here, missing: " + "; ".join(missing))
    try:
        return psf_ext.build(BuildConfig(plugin=False, host=True))
    except PluginBuildError as exc:
        pytest.fail(f"GaussPSF CPU library build failed: {exc}")


@pytest.fixture(scope="session")
def host_lib(host_build_dir: Path) -> ctypes.CDLL:
    return psf_ext.load_host_library(host_build_dir / psf_ext.HOST_LIBRARY)


# --------------------------------------------------------------------------------------------------
# Host library (the kernel's per-pixel math on the CPU) vs references


@pytest.mark.parametrize(("shape", "radius"), CASES)
def test_host_forward_matches_reference(host_lib, shape, radius) -> None:
    image, sigma = random_inputs(shape)
    out = psf_ext.host_gauss_psf(image, sigma, radius, lib=host_lib)
    expected = reference_gauss_psf(torch.from_numpy(image).double(), torch.from_numpy(sigma).double(), radius)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-5)
    if radius == 0:
        np.testing.assert_allclose(out, image, rtol=1e-6, atol=0)  # one weight: out = w * image / w


@pytest.mark.parametrize(("shape", "radius"), CASES)
def test_host_backward_matches_autograd(host_lib, shape, radius) -> None:
    image, sigma = random_inputs(shape, seed=1)
    grad_out = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    gi, gs = psf_ext.host_gauss_psf_backward(image, sigma, grad_out, radius, lib=host_lib)
    ti = torch.from_numpy(image).double().requires_grad_()
    ts = torch.from_numpy(sigma).double().requires_grad_()
    reference_gauss_psf(ti, ts, radius).backward(torch.from_numpy(grad_out).double())
    np.testing.assert_allclose(gi, ti.grad.numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(gs, ts.grad.numpy(), rtol=0, atol=5e-5)
    assert np.abs(ts.grad.numpy()).max() > 1e-3 or radius == 0  # the sigma gradient is not trivially zero


def test_host_constant_image_is_preserved(host_lib) -> None:
    image = np.full((1, 3, 12, 10), 0.37, np.float32)
    _, sigma = random_inputs((1, 3, 12, 10), max_sigma=6.0)
    out = psf_ext.host_gauss_psf(image, sigma, 8, lib=host_lib)
    np.testing.assert_allclose(out, image, rtol=0, atol=1e-6)


def test_host_fp16_emulation(host_lib) -> None:
    image, sigma = random_inputs((2, 3, 10, 9), seed=3)
    image16, sigma16 = image.astype(np.float16), sigma.astype(np.float16)
    out16 = psf_ext.host_gauss_psf(image16, sigma16, 4, lib=host_lib)
    assert out16.dtype == np.float16
    exact = reference_gauss_psf(torch.from_numpy(image16).double(), torch.from_numpy(sigma16).double(), 4).numpy()
    rounded = exact.astype(np.float16)
    # fp32 accumulation then one rounding: within one fp16 step of the exactly rounded value.
    ulp = np.spacing(np.abs(rounded)).astype(np.float64)
    assert np.all(np.abs(out16.astype(np.float64) - rounded.astype(np.float64)) <= ulp)
    assert np.mean(out16 == rounded) > 0.9


def test_host_matches_model_render(host_lib) -> None:
    image, sigma = random_inputs((2, 3, 16, 13), seed=4)
    sigma = np.abs(sigma)  # model.render refuses negative blur
    grad_out = np.random.default_rng(5).standard_normal(image.shape).astype(np.float32)
    ti = torch.from_numpy(image).requires_grad_()
    ts = torch.from_numpy(sigma).requires_grad_()
    expected = render.gauss_psf(ti, ts, 5)
    expected.backward(torch.from_numpy(grad_out))
    out = psf_ext.host_gauss_psf(image, sigma, 5, lib=host_lib)
    gi, gs = psf_ext.host_gauss_psf_backward(image, sigma, grad_out, 5, lib=host_lib)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(gi, ti.grad.numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(gs, ts.grad.numpy(), rtol=0, atol=1e-4)


def test_host_input_errors(host_lib) -> None:
    image, sigma = random_inputs((1, 3, 4, 5))
    with pytest.raises(ValueError, match="radius"):
        psf_ext.host_gauss_psf(image, sigma, 65, lib=host_lib)
    with pytest.raises(TypeError, match="radius"):
        psf_ext.host_gauss_psf(image, sigma, 2.0, lib=host_lib)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma must be"):
        psf_ext.host_gauss_psf(image, sigma[:, :, :3], 2, lib=host_lib)
    with pytest.raises(TypeError, match="float32"):
        psf_ext.host_gauss_psf(image.astype(np.float64), sigma.astype(np.float64), 2, lib=host_lib)
    # The C ABI checks too, and says why.
    out = np.empty_like(image)
    f32 = ctypes.POINTER(ctypes.c_float)
    status = host_lib.gpsf_host_forward_f32(image.ctypes.data_as(f32), sigma.ctypes.data_as(f32),
                                            out.ctypes.data_as(f32), 1, 3, 4, 5, 65)
    assert status != 0
    assert b"radius must be in [0, 64]" in host_lib.gpsf_host_last_error()
    assert host_lib.gpsf_host_max_radius() == psf_ext.MAX_RADIUS


def test_gauss_psf_host_autograd(host_build_dir, monkeypatch) -> None:
    monkeypatch.setattr(psf_ext, "_host_backend", None)
    monkeypatch.setattr(psf_ext, "build_host_library", lambda build_dir_=None: host_build_dir / psf_ext.HOST_LIBRARY)
    image, sigma = random_inputs((1, 3, 8, 9), seed=6)
    sigma = np.abs(sigma)
    ti = torch.from_numpy(image).requires_grad_()
    ts = torch.from_numpy(sigma).requires_grad_()
    out = psf_ext.gauss_psf_host(ti, ts)  # radius from sigma: ceil(3 * s_eff max)
    radius = psf_ext.window_radius(float(np.abs(sigma).max()))
    ri = torch.from_numpy(image).double().requires_grad_()
    rs = torch.from_numpy(sigma).double().requires_grad_()
    ref = reference_gauss_psf(ri, rs, radius)
    torch.testing.assert_close(out, ref.float(), rtol=0, atol=1e-5)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    (ref * weights.double()).sum().backward()
    torch.testing.assert_close(ti.grad, ri.grad.float(), rtol=0, atol=2e-5)
    torch.testing.assert_close(ts.grad, rs.grad.float(), rtol=0, atol=5e-5)
    # fp16 image: fp16 output, fp32 gradients cast back.
    half = torch.from_numpy(image).half().requires_grad_()
    out16 = psf_ext.gauss_psf_host(half, torch.from_numpy(sigma), radius)
    assert out16.dtype == torch.float16
    out16.float().sum().backward()
    assert half.grad is not None and half.grad.dtype == torch.float16
    with pytest.raises(TypeError, match="float32 or float16"):
        psf_ext.gauss_psf_host(ti.double(), ts, 3)
    with pytest.raises(ValueError, match="radius"):
        psf_ext.gauss_psf_host(ti, ts * 40.0)
    with pytest.raises(ValueError, match="negative"):
        psf_ext.gauss_psf_host(ti, -ts, 3)
    with pytest.raises(ValueError, match="non-finite"):
        psf_ext.gauss_psf_host(ti, ts * float("nan"), 3)


def test_window_radius() -> None:
    assert psf_ext.window_radius(0.0) == 1
    assert psf_ext.window_radius(2.0) == int(np.ceil(3 * np.sqrt(4 + MIN_SIGMA_PX**2)))
    with pytest.raises(ValueError):
        psf_ext.window_radius(float("nan"))


# --------------------------------------------------------------------------------------------------
# Build helper errors (no compiler run)


def test_build_config_validation() -> None:
    with pytest.raises(ValueError, match="below 75"):
        BuildConfig(cuda_archs="52").validate()
    with pytest.raises(ValueError, match="bad CUDA architecture"):
        BuildConfig(cuda_archs="sm87").validate()
    with pytest.raises(ValueError, match="checks need"):
        BuildConfig(plugin=False, checks=True).validate()
    BuildConfig(cuda_archs="87").validate()
    BuildConfig(cuda_archs="90a;87").validate()


def test_build_reports_missing_tools(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(psf_ext, "find_nvcc", lambda: None)
    monkeypatch.setattr(psf_ext, "find_tensorrt_include_dir", lambda: None)
    with pytest.raises(PluginBuildError, match="nvcc.*TensorRT headers"):
        psf_ext.build_plugin(tmp_path / "b")
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------------------------------
# The TensorRT plugin library


def test_plugin_exports_entry_points(build_dir) -> None:
    plugin = build_dir / psf_ext.PLUGIN_LIBRARY
    lib = ctypes.CDLL(str(plugin))  # loads without a GPU: only the CUDA runtime is linked
    assert hasattr(lib, "getCreators") and hasattr(lib, "setLoggerFinder")
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not installed; symbol table not inspected")
    exported = subprocess.run([nm, "-D", "--defined-only", str(plugin)], capture_output=True, text=True,
                              check=True).stdout
    names = {line.split()[-1] for line in exported.splitlines() if " T " in line}
    assert names == {"getCreators", "setLoggerFinder"}  # kernels and classes stay hidden
    host = subprocess.run([nm, "-D", "--defined-only", str(build_dir / psf_ext.HOST_LIBRARY)], capture_output=True,
                          text=True, check=True).stdout
    assert {line.split()[-1] for line in host.splitlines() if " T " in line} == {
        "gpsf_host_abi_version", "gpsf_host_max_radius", "gpsf_host_last_error", "gpsf_host_forward_f32",
        "gpsf_host_forward_f16", "gpsf_host_backward_f32"}
    readelf = shutil.which("readelf")
    if readelf is not None:
        dynamic = subprocess.run([readelf, "-d", str(build_dir / psf_ext.HOST_LIBRARY)], capture_output=True,
                                 text=True, check=True).stdout
        assert "libcudart" not in dynamic and "libcuda." not in dynamic


def test_plugin_self_check(build_dir) -> None:
    """gausspsf_plugin_check drives every IPluginV3 entry point as TensorRT does (GPU part only on a GPU)."""
    result = subprocess.run([str(build_dir / psf_ext.CHECK_PROGRAM)], capture_output=True, text=True, timeout=600)  # a hang guard
    assert result.returncode == 0, result.stdout + result.stderr
    passed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("PASS ")}
    for name in ["creator_identity", "creator_field_names", "create_radius_too_big_fails", "formats_others_rejected",
                 "output_shape_is_image_shape", "configure_sigma_channels_rejected", "deserialize_round_trip",
                 "clone_owns_its_fields", "enqueue_null_buffers_reported"]:
        assert name in passed, result.stdout
    gpu = {"gpu_enqueue_fp32_matches_host", "gpu_enqueue_fp16_matches_host", "gpu_backward_matches_host"}
    assert gpu <= passed or ("SKIP gpu_enqueue" in result.stdout and "enqueue_without_gpu_reported" in passed)


def test_trt8_variant_compiles(build_dir) -> None:
    """The JetPack 5 IPluginV2DynamicExt variant compiles and links (against the TensorRT 10 headers here).

    It is not loaded: the only TensorRT runtime here is the 11.x lean runtime, which has no IPluginV2.
    """
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_lean_libs")
    libs = sorted(Path(p).glob("libnvinfer_lean.so*") for p in (spec.submodule_search_locations or [])) if spec else []
    nvinfer = next((path for group in libs for path in group), None)
    if nvinfer is None:
        pytest.skip("no libnvinfer to link against (pip install tensorrt-lean-cu13)")
    out = psf_ext.build(BuildConfig(plugin=False, host=False, trt8=True, cuda_archs=TEST_ARCHS,
                                    nvinfer_library=nvinfer))
    lib = out / psf_ext.PLUGIN_LIBRARY_TRT8
    assert lib.is_file()
    readelf = shutil.which("readelf")
    if readelf is not None:
        dynamic = subprocess.run([readelf, "-d", "--dyn-syms", str(lib)], capture_output=True, text=True,
                                 check=True).stdout
        assert "libnvinfer" in dynamic and "libcudart" in dynamic
        assert "getPluginRegistry" in dynamic  # the self-registering creator calls it at load time


LEAN_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorrt_lean as trt
    registry = trt.get_plugin_registry()
    handle = registry.load_library(sys.argv[1])
    creator = registry.get_creator("GaussPSF", "1", "")
    out = {"handle": handle is not None, "creator": creator is not None}
    if creator is not None:
        out["name"] = [creator.name, creator.plugin_version, creator.plugin_namespace]
        out["fields"] = [[f.name, str(f.type)] for f in creator.field_names]
        listed = [(c.name, c.plugin_version) for c in registry.all_creators]
        out["listed"] = ("GaussPSF", "1") in listed
        def make(value, kind=trt.PluginFieldType.INT32, dtype=np.int32):
            fc = trt.PluginFieldCollection([trt.PluginField("radius", np.array([value], dtype=dtype), kind)])
            return creator.create_plugin("gauss_psf", fc, trt.TensorRTPhase.BUILD)
        plugin = make(5)
        out["created"] = plugin is not None
        if plugin is not None:
            core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
            out["core"] = [core.plugin_name, core.plugin_version, core.plugin_namespace]
            out["outputs"] = plugin.get_capability_interface(trt.PluginCapabilityType.BUILD).num_outputs
        out["bad_radius_refused"] = make(99) is None
        out["runtime_phase"] = creator.create_plugin(
            "gauss_psf", trt.PluginFieldCollection([trt.PluginField("radius", np.array([3], np.int32),
                                                   trt.PluginFieldType.INT32)]), trt.TensorRTPhase.RUNTIME) is not None
    print("RESULT " + json.dumps(out))
""")


def test_plugin_loads_in_tensorrt_lean(build_dir) -> None:
    pytest.importorskip("tensorrt_lean", reason="tensorrt-lean (pip install tensorrt-lean-cu13) not installed")
    result = subprocess.run([sys.executable, "-c", LEAN_SCRIPT, str(build_dir / psf_ext.PLUGIN_LIBRARY)],
                            capture_output=True, text=True, timeout=600)  # a hang guard
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["handle"] and out["creator"] and out["listed"]
    assert out["name"] == ["GaussPSF", "1", ""]
    assert out["fields"] == [["radius", "PluginFieldType.INT32"]]
    assert out["created"] and out["core"] == ["GaussPSF", "1", ""] and out["outputs"] == 1
    assert out["bad_radius_refused"] and out["runtime_phase"]
    # (clone, shapes and serialization through these Python bindings are not reachable for a C++ plugin;
    # gausspsf_plugin_check covers them.)
    assert "radius must be in [0, 64], got 99" in result.stderr  # reported by the plugin


# --------------------------------------------------------------------------------------------------
# CUDA (GPU machines only)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_extension_matches_renderer(dtype) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of PyTorch")
    if psf_ext.find_nvcc() is None:
        pytest.skip("needs nvcc to build the PyTorch extension")
    image, sigma = random_inputs((3, 3, 40, 37), seed=7, max_sigma=4.0)
    sigma = np.abs(sigma)
    grad_out = torch.from_numpy(np.random.default_rng(8).standard_normal(image.shape).astype(np.float32))
    radius = 9
    ti = torch.from_numpy(image).double().requires_grad_()
    ts = torch.from_numpy(sigma).double().requires_grad_()
    expected = render.gauss_psf(ti, ts, radius)
    expected.backward(grad_out.double())
    ci = torch.from_numpy(image).cuda().to(dtype).requires_grad_()
    cs = torch.from_numpy(sigma).cuda().requires_grad_()
    out = psf_ext.gauss_psf_cuda(ci, cs, radius)
    assert out.dtype == dtype and out.is_cuda
    out.backward(grad_out.cuda().to(dtype))
    atol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(out.double().cpu(), expected.detach(), rtol=0, atol=atol)
    grad_atol = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(ci.grad.double().cpu(), ti.grad, rtol=0, atol=grad_atol)
    torch.testing.assert_close(cs.grad.double().cpu(), ts.grad, rtol=0, atol=10 * grad_atol)


def test_benchmark_cpu_sanity(host_build_dir, tmp_path) -> None:
    """benchmarks/bench_psf_cuda.py without a GPU: prints the notice and a host-vs-torch figure, exits 0."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CPU fallback of the benchmark is not taken")
    script = REPO / "benchmarks" / "bench_psf_cuda.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), DAIF_PLUGIN_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(script), "--cpu-size", "24", "--stack", "2", "--radii", "2", "3",
                             "--repeats", "2", "--host-lib", str(host_build_dir / psf_ext.HOST_LIBRARY)],
                            capture_output=True, text=True, timeout=600, env=env)  # a hang guard
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no CUDA GPU" in result.stdout
    assert "host library" in result.stdout
    bad = subprocess.run([sys.executable, str(script), "--radii", "99"], capture_output=True, text=True, timeout=600,
                         env=env)
    assert bad.returncode == 2 and "radius" in bad.stderr and "Traceback" not in bad.stderr
