"""The runners: TensorRT (through fakes of TensorRT and the CUDA driver), onnxruntime, errors and fallbacks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export_consts import FOCUS, SIZE
from export.cuda_backend import CudaPythonBackend, PyCudaBackend, open_cuda
from export.engine import EngineConfig, onnx_to_engine
from export.errors import CudaUnavailableError, EngineMismatchError, PluginMissingError
from export.metadata import MetadataError, sidecar_path
from export.runtime import OnnxRunner, TensorRTRunner
from fakes import FakeCudaDriver, FakePyCuda, make_fake_tensorrt, write_plugin_standin
from model.runners import Runner


@pytest.fixture
def built(tmp_path, physics_export):
    """An engine built with the fakes (TensorRT 10.3.0 on an 'Orin', compute 8.7)."""
    driver = FakeCudaDriver()
    trt = make_fake_tensorrt("10.3.0", driver)
    plugin = write_plugin_standin(tmp_path / "libgausspsf_trt.so")
    cuda = CudaPythonBackend(driver=driver)
    result = onnx_to_engine(EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine",
                                         plugin=plugin), trt=trt, cuda=cuda)
    cuda.close()
    return {"engine": result.engine, "plugin": plugin, "driver": driver, "trt": trt}


def _runtime(built, version="10.3.0", name="Orin", cc=(8, 7)):
    """A fresh process on the device: new driver state (same or other GPU), new TensorRT module."""
    driver = FakeCudaDriver(name=name, cc=cc)
    return driver, make_fake_tensorrt(version, driver)


def test_tensorrt_runner_matches_onnxruntime(built, physics_export, stack) -> None:
    driver, trt = _runtime(built)
    cuda = CudaPythonBackend(driver=driver)
    runner = TensorRTRunner(built["engine"], trt=trt, cuda=cuda, plugin=built["plugin"])
    assert isinstance(runner, Runner)
    assert runner.lens.name == "test-50mm" and runner.focus_m == FOCUS and runner.working_range_m == (0.5, 12.0)
    images, focus = stack
    got = runner.predict(images, focus)
    ref = OnnxRunner(physics_export.files["onnxruntime"], threads=1).predict(images, focus)
    np.testing.assert_array_equal(got.depth_m, ref.depth_m)
    np.testing.assert_array_equal(got.aif, ref.aif)
    np.testing.assert_array_equal(got.confidence, ref.confidence)
    np.testing.assert_array_equal(got.rendered, ref.rendered)
    assert got.depth_m.shape == (SIZE[1], SIZE[0]) and got.aif.shape == (SIZE[1], SIZE[0], 3)
    # copies are asynchronous on the runner's own (non-default) stream, through pinned host buffers
    streams = {s for _, _, s in driver.copies}
    assert len(streams) == 1 and 0 not in streams
    assert trt.stats["executions"] == 1
    n_dev, n_host = len(driver.device_mem), len(driver.host_mem)
    assert n_dev == 7 and n_host == 7  # one device and one pinned buffer per I/O tensor
    runner.predict(images * 0.5, focus)  # buffers are reused, not reallocated
    assert (len(driver.device_mem), len(driver.host_mem)) == (n_dev, n_host)
    runner.close()
    runner.close()  # idempotent
    assert not driver.device_mem and not driver.host_mem and not driver.streams
    cuda.close()
    assert driver.ctx_refs == 0


def test_runner_opens_and_closes_its_own_cuda(built, stack, monkeypatch) -> None:
    driver, trt = _runtime(built)
    import export.cuda_backend as cb

    monkeypatch.setattr(cb, "_import_cuda_python", lambda: driver)
    runner = TensorRTRunner(built["engine"], trt=trt, plugin=built["plugin"])
    runner.predict(*stack)
    runner.close()
    assert driver.ctx_refs == 0 and not driver.device_mem


def test_pycuda_backend(built, physics_export, stack) -> None:
    driver, trt = _runtime(built)
    cuda = PyCudaBackend(driver=FakePyCuda(driver))
    runner = TensorRTRunner(built["engine"], trt=trt, cuda=cuda, plugin=built["plugin"])
    got = runner.predict(*stack)
    ref = OnnxRunner(physics_export.files["onnxruntime"], threads=1).predict(*stack)
    np.testing.assert_array_equal(got.depth_m, ref.depth_m)
    runner.close()
    cuda.close()
    assert not driver.device_mem and driver.ctx_refs == 0


def test_other_tensorrt_version_is_refused_with_fallback(built) -> None:
    driver, trt = _runtime(built, version="10.4.0")
    with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0") as err:
        TensorRTRunner(built["engine"], trt=trt, cuda=CudaPythonBackend(driver=driver), plugin=built["plugin"])
    msg = str(err.value)
    assert "python -m export engine" in msg and "--runtime onnxruntime --model" in msg and msg.count("daifnet.onnx") >= 1
    assert not msg.split("--model ")[-1].strip().endswith(".trt.onnx")  # the fallback is the onnxruntime flavour


def test_other_gpu_is_refused_with_fallback(built) -> None:
    driver, trt = _runtime(built, name="Xavier", cc=(7, 2))
    cuda = CudaPythonBackend(driver=driver)
    with pytest.raises(EngineMismatchError, match="built for Orin") as err:
        TensorRTRunner(built["engine"], trt=trt, cuda=cuda, plugin=built["plugin"])
    assert "--runtime onnxruntime" in str(err.value)
    assert not driver.streams and not driver.device_mem  # nothing leaked by the refusal


def test_missing_plugin_library_at_run_time(built, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DAIF_PLUGIN_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("DAIF_GAUSSPSF_PLUGIN", raising=False)
    built["plugin"].unlink()  # the library recorded at build time is gone
    driver, trt = _runtime(built)
    with pytest.raises(PluginMissingError, match="DAIF_GAUSSPSF_PLUGIN") as err:
        TensorRTRunner(built["engine"], trt=trt, cuda=CudaPythonBackend(driver=driver))
    assert "--runtime onnxruntime" in str(err.value)


def test_plugin_found_through_the_environment(built, tmp_path, monkeypatch, stack) -> None:
    moved = write_plugin_standin(tmp_path / "elsewhere.so")
    built["plugin"].unlink()
    monkeypatch.setenv("DAIF_GAUSSPSF_PLUGIN", str(moved))
    driver, trt = _runtime(built)
    runner = TensorRTRunner(built["engine"], trt=trt, cuda=CudaPythonBackend(driver=driver))
    assert runner.engine.plugin_path == moved
    runner.predict(*stack)
    runner.close()


def test_engine_without_metadata_names_the_fix(built) -> None:
    sidecar_path(built["engine"]).unlink()
    with pytest.raises(MetadataError, match="python -m export engine"):
        TensorRTRunner(built["engine"], trt=built["trt"])


def test_corrupt_engine_is_refused(built) -> None:
    built["engine"].write_bytes(b"not an engine")
    driver, trt = _runtime(built)
    with pytest.raises(EngineMismatchError, match="could not deserialize"):
        TensorRTRunner(built["engine"], trt=trt, cuda=CudaPythonBackend(driver=driver), plugin=built["plugin"])


def test_shape_outside_the_engine_is_refused(built, stack) -> None:
    driver, trt = _runtime(built)
    runner = TensorRTRunner(built["engine"], trt=trt, cuda=CudaPythonBackend(driver=driver), plugin=built["plugin"])
    images, focus = stack
    with pytest.raises(ValueError, match="exported for 48x40"):
        runner.predict(images[:, :32, :40], focus)
    with pytest.raises(ValueError, match="outside the engine's profile"):
        runner.engine.run({"images": np.zeros((1, 5, 3, 32, 40), np.float32), "focus_m": np.ones((1, 5), np.float32)})
    runner.close()


def test_real_cuda_python_without_a_driver_is_a_clear_error() -> None:
    """The real cuda-python: on a machine without an NVIDIA driver it must say so and name the fallback."""
    pytest.importorskip("cuda.bindings.driver", reason="cuda-python is not installed")
    try:
        backend = open_cuda("cuda-python")
    except CudaUnavailableError as e:
        assert "driver" in str(e) and "--runtime onnxruntime" in str(e)
    else:  # a GPU machine: the backend works instead
        info = backend.device_info()
        assert info.name and "." in info.compute_capability
        backend.close()


def test_fake_driver_failures_become_clear_errors() -> None:
    with pytest.raises(CudaUnavailableError, match="no NVIDIA driver"):
        CudaPythonBackend(driver=FakeCudaDriver(driver_present=False))
    with pytest.raises(CudaUnavailableError, match="CUDA_ERROR_NO_DEVICE"):
        CudaPythonBackend(driver=FakeCudaDriver(devices=0))


def test_no_tensorrt_names_onnxruntime(built, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorrt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(ValueError, match="python3-libnvinfer") as err:
        TensorRTRunner(built["engine"])
    assert "--runtime onnxruntime" in str(err.value)


def test_fake_runtime_api_names_exist_in_the_real_tensorrt() -> None:
    """Keep the fake honest: every runtime-side name the runner uses exists in the real (lean) TensorRT."""
    real = pytest.importorskip("tensorrt_lean", reason="tensorrt-lean is not installed")
    used = {
        real.ICudaEngine: ["num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype",
                           "get_tensor_shape", "get_tensor_profile_shape", "create_execution_context", "serialize"],
        real.IExecutionContext: ["set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3"],
        real.Runtime: ["deserialize_cuda_engine"],
        real.IPluginRegistry: ["load_library", "get_creator"],
        real.ITimingCache: ["serialize", "combine", "reset"],
        real.IOptimizationProfile: ["set_shape", "get_shape"],
    }
    for cls, names in used.items():
        missing = [n for n in names if not hasattr(cls, n)]
        assert not missing, (cls.__name__, missing)
    for enum_name, members in {"TensorIOMode": ["INPUT", "OUTPUT"], "DataType": ["FLOAT", "HALF", "INT8"],
                               "MemoryPoolType": ["WORKSPACE"]}.items():
        assert all(hasattr(getattr(real, enum_name), m) for m in members), enum_name
    severity = real.ILogger.Severity
    assert all(hasattr(severity, m) for m in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"))
    assert real.nptype(real.DataType.FLOAT) is np.float32 and callable(real.get_plugin_registry)


def test_real_lean_runtime_loads_the_real_plugin() -> None:
    """tensorrt_lean + the GaussPSF library, built here (or reused from the build cache when its sources and
    options are unchanged: the same configuration as tests/export/test_plugins.py)."""
    real = pytest.importorskip("tensorrt_lean", reason="tensorrt-lean is not installed")
    from export import psf_ext
    from export.runtime import load_plugin_library

    missing = psf_ext.missing_build_tools(plugin=True)
    if missing:
        pytest.skip("cannot build the GaussPSF plugin here, missing: " + "; ".join(missing))
    build = psf_ext.build(psf_ext.BuildConfig(plugin=True, host=True, checks=True, cuda_archs="75"))
    creator = load_plugin_library(real, build / psf_ext.PLUGIN_LIBRARY)
    assert creator.name == "GaussPSF" and creator.plugin_version == "1"


def test_metadata_record_is_plain_json(built) -> None:
    record = json.loads(sidecar_path(built["engine"]).read_text())
    assert record["format"] == "daif-engine/1" and record["gpu"]["compute_capability"] == "8.7"
    assert record["onnx"]["flavour"] == "tensorrt" and record["shapes"]["images"]["opt"] == [1, 5, 3, 40, 48]


def test_onnx_runner_settings_and_the_op_it_uses(physics_export, net_export, stack) -> None:
    from export.ort_native import native_status

    images, focus = stack
    with pytest.raises(ValueError, match="graph optimisation level"):
        OnnxRunner(physics_export.files["onnxruntime"], threads=1, optimization="fastest")
    ref = OnnxRunner(physics_export.files["onnxruntime"], threads=1).predict(images, focus)
    for level in ("disable", "basic", "extended"):  # numerics do not depend on the optimisation level
        runner = OnnxRunner(physics_export.files["onnxruntime"], threads=2, optimization=level)
        assert runner.optimization == level and runner.threads == 2
        pred = runner.predict(images, focus)
        np.testing.assert_allclose(pred.depth_m, ref.depth_m, atol=1e-5, rtol=0)
        np.testing.assert_allclose(pred.confidence, ref.confidence, atol=1e-5, rtol=0)
    assert OnnxRunner(net_export.files["any"], threads=1).psf_backend is None  # no GaussPSF node
    native, _why = native_status()
    assert OnnxRunner(physics_export.files["onnxruntime"], threads=1).psf_backend == (
        "native" if native is not None else "torch")
