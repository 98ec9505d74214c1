"""The native onnxruntime GaussPSF op (libgausspsf_ort.so): numerics against PyTorch and the CUDA kernel's
per-pixel code, inside onnxruntime (threads, errors), its build cache, and the Python-op fallback."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from export import ort_native, ort_ops
from export.errors import RuntimeUnavailableError
from export.targets import ORT_DOMAIN, PSF_OP_TYPE
from model.render import gauss_psf

_LIB, _WHY = ort_native.native_status()
needs_native = pytest.mark.skipif(_LIB is None, reason=f"native GaussPSF op unavailable here: {_WHY}")

# (N, C, H, W, radius, largest sigma px): odd sizes, C = 1/3/5, R = 0, R beyond the image, sharp and blurry
CASES = [(2, 3, 37, 53, 5, 3.0), (1, 3, 40, 30, 32, 12.0), (3, 1, 17, 70, 8, 0.5), (2, 5, 33, 41, 4, 2.0),
         (1, 3, 20, 20, 0, 1.0), (1, 3, 8, 9, 64, 30.0), (2, 3, 50, 90, 32, 0.0)]


def _inputs(n, c, h, w, smax, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w), dtype=np.float32)
    s = (rng.random((n, 1, h, w), dtype=np.float32) * smax).astype(np.float32)
    s[..., : w // 3] *= 0.05  # a sharp strip: exercises the skipped window parts beside blurry pixels
    return x, s


@needs_native
@pytest.mark.parametrize("case", CASES, ids=[f"{n}x{c}x{h}x{w}-R{r}" for n, c, h, w, r, _ in CASES])
def test_native_forward_matches_pytorch_and_the_kernel_math(case) -> None:
    n, c, h, w, r, smax = case
    x, s = _inputs(n, c, h, w, smax)
    got = ort_native.cpu_gauss_psf(x, s, r, threads=1)
    with torch.inference_mode():
        want = gauss_psf(torch.from_numpy(x), torch.from_numpy(s), r).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # gaussPsfMath.h's forwardPixel, the code the CUDA kernel and the TensorRT plugin run
    np.testing.assert_allclose(got, ort_native.reference_gauss_psf(x, s, r), atol=1e-5, rtol=0)
    # no atomics, fixed summation order: threads do not change a bit
    np.testing.assert_array_equal(got, ort_native.cpu_gauss_psf(x, s, r, threads=3))


@needs_native
def test_native_forward_is_a_weighted_mean_and_exact_for_constant_images() -> None:
    x, s = _inputs(1, 3, 30, 40, 6.0, seed=2)
    x[:] = 0.375
    out = ort_native.cpu_gauss_psf(x, s, 16)
    np.testing.assert_allclose(out, 0.375, atol=1e-6)
    sharp = ort_native.cpu_gauss_psf(x, np.zeros_like(s), 16)  # sigma 0: s_eff 0.25 px, weights ~1e-35 off-centre
    np.testing.assert_allclose(sharp, x, atol=1e-6)


@needs_native
def test_native_forward_refuses_bad_input() -> None:
    x, s = _inputs(1, 3, 10, 12, 1.0)
    with pytest.raises(ValueError, match="radius must be in"):
        ort_native.cpu_gauss_psf(x, s, 65)
    with pytest.raises(ValueError, match="sigma"):
        ort_native.cpu_gauss_psf(x, s[:, :, :5], 3)


def _psf_model(radius: int, c: int | str = 3) -> bytes:
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", c, "h", "w"])
    sigma = helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["n", 1, "h", "w"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    node = helper.make_node(PSF_OP_TYPE, ["image", "sigma"], ["out"], domain=ORT_DOMAIN, radius=radius)
    graph = helper.make_graph([node], "psf", [image, sigma], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ORT_DOMAIN, 1)])
    model.ir_version = 8
    return model.SerializeToString()


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
def test_native_op_in_onnxruntime(threads) -> None:
    import onnxruntime as ort

    so = ort_ops.session_options(threads, backend="native")
    assert ort_ops.get_backend() == "native"
    sess = ort.InferenceSession(_psf_model(7), so, providers=["CPUExecutionProvider"])
    x, s = _inputs(4, 3, 45, 61, 4.0, seed=5)
    (got,) = sess.run(None, {"image": x, "sigma": s})
    with torch.inference_mode():
        want = gauss_psf(torch.from_numpy(x), torch.from_numpy(s), 7).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got, ort_native.cpu_gauss_psf(x, s, 7))
    with pytest.raises(Exception, match="sigma"):  # onnxruntime's error carries the op's message
        sess.run(None, {"image": x, "sigma": s[:, :, :, :10]})


@needs_native
def test_native_op_refuses_a_bad_radius_when_the_session_is_made() -> None:
    import onnxruntime as ort

    with pytest.raises(Exception, match="radius must be in"):
        ort.InferenceSession(_psf_model(99), ort_ops.session_options(1, backend="native"),
                             providers=["CPUExecutionProvider"])


@needs_native
def test_build_is_cached_and_atomic(tmp_path) -> None:
    first = ort_native.build_ort_library(tmp_path, native_arch=False)
    assert first.name == ort_native.ORT_LIBRARY and first.is_file()
    stamp = first.stat().st_mtime_ns
    again = ort_native.build_ort_library(tmp_path, native_arch=False)
    assert again == first and again.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in first.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind
    assert (first.parent / "build.json").is_file()
    lib = ort_native.load_cpu_library(first)
    x, s = _inputs(1, 3, 12, 14, 2.0)
    # a portable build (no -march=native): same result up to fused multiply-add rounding
    np.testing.assert_allclose(ort_native.cpu_gauss_psf(x, s, 3, lib=lib), ort_native.cpu_gauss_psf(x, s, 3), atol=1e-6)


def test_without_headers_auto_falls_back_to_the_python_op_and_says_why(tmp_path, monkeypatch, caplog) -> None:
    pytest.importorskip("onnxruntime_extensions", reason="the Python op fallback needs onnxruntime-extensions")
    import onnxruntime as ort

    monkeypatch.setattr(ort_native, "_include_candidates", lambda: [tmp_path / "no-headers"])
    monkeypatch.setenv("DAIF_PLUGIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ort_native.ENV_LIBRARY, raising=False)
    ort_native._reset_for_tests()
    monkeypatch.setitem(ort_ops._state, "warned", False)
    try:
        path, reason = ort_native.native_status()
        assert path is None and "scripts/install.sh" in reason and "libonnxruntime-dev" in reason
        with pytest.raises(RuntimeUnavailableError, match="native GaussPSF op is not available"):
            ort_ops.session_options(1, backend="native")
        with caplog.at_level(logging.WARNING, logger="export.ort_ops"):
            so = ort_ops.session_options(1, backend="auto")
        assert ort_ops.get_backend() == "torch"
        assert "Python op" in caplog.text and "install.sh" in caplog.text
        sess = ort.InferenceSession(_psf_model(3), so, providers=["CPUExecutionProvider"])
        x, s = _inputs(1, 3, 12, 14, 2.0)
        (got,) = sess.run(None, {"image": x, "sigma": s})
        with torch.inference_mode():
            np.testing.assert_allclose(got, gauss_psf(torch.from_numpy(x), torch.from_numpy(s), 3).numpy(), atol=1e-6)
    finally:
        ort_native._reset_for_tests()
        ort_ops.set_backend("auto")


def test_prebuilt_library_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ort_native.ENV_LIBRARY, str(tmp_path / "missing.so"))
    ort_native._reset_for_tests()
    try:
        with pytest.raises(ort_native.NativeOpUnavailable, match="no such file"):
            ort_native.native_library()
        if _LIB is not None:
            monkeypatch.setenv(ort_native.ENV_LIBRARY, str(_LIB))
            ort_native._reset_for_tests()
            assert ort_native.native_library() == _LIB
    finally:
        monkeypatch.delenv(ort_native.ENV_LIBRARY)
        ort_native._reset_for_tests()


def test_header_version_is_read_and_old_headers_are_skipped(tmp_path, monkeypatch) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "onnxruntime_c_api.h").write_text("#define ORT_API_VERSION 16\n")
    assert ort_native.ort_header_api_version(old) == 16
    monkeypatch.setattr(ort_native, "_include_candidates", lambda: [old])
    assert ort_native.find_ort_include_dir() is None
    (old / "onnxruntime_c_api.h").write_text("#define ORT_API_VERSION 21\n")
    assert ort_native.find_ort_include_dir() == old


@needs_native
def test_the_op_source_uses_the_kernel_math_header() -> None:
    """The op is built from gaussPsfMath.h (effectiveVariance, kMaxRadius, forwardPixel), not a copy of it."""
    src = (ort_native.SOURCE_DIR / "gaussPsfCpu.h").read_text()
    assert '#include "gaussPsfMath.h"' in src and "effectiveVariance(" in src and "forwardPixel(" in src
    assert os.path.basename(str(_LIB)) == ort_native.ORT_LIBRARY
