"""ONNX -> TensorRT engine: the builder code against a faithful fake of the TensorRT API (no builder here).

The real build is in ``test_real_builder_builds_an_engine`` (marked ``tensorrt``), which runs only where
``import tensorrt`` has a builder and a GPU is present (a Jetson).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export_consts import FOCUS, SIZE
from export.cuda_backend import CudaPythonBackend
from export.engine import EngineConfig, engine_shapes, import_tensorrt_builder, onnx_to_engine, trtexec_command
from export.errors import EngineBuildError, PluginMissingError, RuntimeUnavailableError
from export.metadata import read_engine_info, read_onnx_info
from fakes import FakeCudaDriver, make_fake_tensorrt, write_plugin_standin


@pytest.fixture
def fake(tmp_path):
    driver = FakeCudaDriver()
    return {"driver": driver, "trt": make_fake_tensorrt("10.3.0", driver), "cuda": CudaPythonBackend(driver=driver),
            "plugin": write_plugin_standin(tmp_path / "libgausspsf_trt.so")}


def _stacks(root: Path, lens, n: int) -> Path:
    from model.formats import FocalStack, write_stack

    rng = np.random.default_rng(5)
    for i in range(n):
        images = rng.random((6, 30, 36, 3), dtype=np.float32)
        focus = np.array([0.9, 1.1, 1.6, 2.4, 4.5, 6.2])
        write_stack(root / f"scene_{i}", FocalStack(images=images, focus_m=focus, lens=lens))
    return root


def test_fp16_physics_engine_with_metadata_and_timing_cache(tmp_path, physics_export, fake, export_lens) -> None:
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine", plugin=fake["plugin"])
    result = onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert result.engine.is_file() and result.engine.read_bytes().startswith(b"FAKETRT")
    header = json.loads(result.engine.read_bytes()[12:12 + int.from_bytes(result.engine.read_bytes()[8:12], "little")])
    assert header["flags"] == ["FP16"] and header["plugins"] == ["GaussPSF"]
    assert header["profile"]["images"] == [[1, 5, 3, SIZE[1], SIZE[0]]] * 3
    info = read_engine_info(result.engine)
    assert info.tensorrt_version == "10.3.0" and info.gpu_name == "Orin" and info.compute_capability == "8.7"
    assert info.precision == "fp16" and info.plugin_needed and info.plugin_library == str(fake["plugin"])
    assert info.onnx.lens.to_dict() == export_lens.to_dict() and list(info.onnx.focus_m) == FOCUS
    record = json.loads(result.metadata.read_text())
    assert record["lens"]["name"] == "test-50mm" and record["focus_distances_m"] == FOCUS
    # timing cache written, then reused by the next build
    assert result.timing_cache.is_file() and fake["trt"].stats["timing_cache_hits"] == 0
    onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert fake["trt"].stats["timing_cache_hits"] == 1
    assert "--fp16" in result.trtexec and f"--dynamicPlugins={fake['plugin']}" in result.trtexec
    assert "--minShapes" not in result.trtexec  # fixed-size ONNX: no profile flags
    assert not fake["driver"].device_mem  # nothing left allocated


def test_onnxruntime_flavour_is_converted_for_the_parser(tmp_path, physics_export, fake) -> None:
    cfg = EngineConfig(onnx=physics_export.files["onnxruntime"], out=tmp_path / "m.engine", plugin=fake["plugin"])
    result = onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert any("converted" in n for n in result.notes)
    assert "daifnet.trt.onnx" in result.trtexec  # trtexec is pointed at the TensorRT flavour


def test_missing_plugin_is_a_clear_error(tmp_path, physics_export, fake, monkeypatch) -> None:
    monkeypatch.setenv("DAIF_PLUGIN_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("DAIF_GAUSSPSF_PLUGIN", raising=False)
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine")
    with pytest.raises(PluginMissingError, match="python -m export onnx --graph net"):
        onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert not (tmp_path / "m.engine").exists()


def test_parser_errors_reach_the_user(tmp_path, physics_export, fake) -> None:
    """A library that is loaded but registers no GaussPSF creator: the parser's error is shown."""
    other = tmp_path / "other.so"
    other.write_text("FAKE-TRT-PLUGIN SomethingElse 1\n")
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine", plugin=other)
    with pytest.raises(PluginMissingError, match="no creator GaussPSF"):
        onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    # the parser alone, without any plugin loaded
    trt = make_fake_tensorrt("10.3.0", fake["driver"])
    parser = trt.OnnxParser(trt.Builder(trt.Logger()).create_network(0), trt.Logger())
    assert not parser.parse(physics_export.files["tensorrt"].read_bytes())
    assert "GaussPSF" in parser.get_error(0).desc()


def test_dynamic_engine_profile_and_trtexec_shapes(tmp_path, dynamic_export, fake) -> None:
    cfg = EngineConfig(onnx=dynamic_export.files["onnxruntime"], out=tmp_path / "d.engine", plugin=fake["plugin"],
                       precision="fp32", min_size=(32, 24), opt_size=(48, 40), max_size=(64, 64), min_stack=3,
                       max_stack=7)
    result = onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    info = read_engine_info(result.engine)
    assert info.shapes["images"] == {"min": [1, 3, 3, 24, 32], "opt": [1, 5, 3, 40, 48], "max": [1, 7, 3, 64, 64]}
    assert info.shapes["focus_m"]["max"] == [1, 7]
    assert "--minShapes=images:1x3x3x24x32,focus_m:1x3" in result.trtexec and "--fp16" not in result.trtexec


def test_profile_must_cover_dynamic_inputs(dynamic_export, fake) -> None:
    """The fake builder refuses what TensorRT refuses: a dynamic network without a profile."""
    trt = fake["trt"]
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse(dynamic_export.files["onnxruntime"].read_bytes()) is False  # no plugin
    trt.get_plugin_registry().load_library(str(fake["plugin"]))
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse(dynamic_export.files["onnxruntime"].read_bytes())
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert any("optimization profile" in m for _, m in logger.messages)


def test_fixed_onnx_refuses_a_size_range(physics_export) -> None:
    info = read_onnx_info(physics_export.files["tensorrt"])
    with pytest.raises(ValueError, match="--dynamic-size"):
        engine_shapes(info, EngineConfig(onnx=physics_export.files["tensorrt"], max_size=(96, 80)))
    with pytest.raises(ValueError, match="--dynamic-stack"):
        engine_shapes(info, EngineConfig(onnx=physics_export.files["tensorrt"], max_stack=8))


def test_int8_calibration_from_focal_stack_folders(tmp_path, physics_export, fake, export_lens) -> None:
    calib = _stacks(tmp_path / "calib", export_lens, 3)
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "q.engine", plugin=fake["plugin"],
                       precision="int8", calib=calib, calib_stacks=2)
    result = onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert fake["trt"].stats["calibration_batches"] == 2  # calib_stacks caps the three folders
    assert result.calibration["stacks_used"] == 2 and cfg.calib_cache_path.is_file()
    amax = json.loads(cfg.calib_cache_path.read_bytes()[len(b"FAKECALIB"):])
    assert 0.9 < amax["images"] <= 1.0 and amax["focus_m"] == pytest.approx(6.2, abs=0.01)
    assert "--int8" in result.trtexec and f"--calib={cfg.calib_cache_path}" in result.trtexec
    # the second build reads the cache instead of calibrating again
    onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert fake["trt"].stats["calibration_batches"] == 2
    assert not fake["driver"].device_mem and not fake["driver"].streams


def test_int8_needs_calibration_data(tmp_path, physics_export) -> None:
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "q.engine", precision="int8")
    with pytest.raises(ValueError, match="--calib"):
        cfg.validate()


def test_tensorrt_11_without_fp16_flag_names_the_fix(tmp_path, physics_export, fake) -> None:
    trt = fake["trt"]
    import enum

    trt.BuilderFlag = enum.IntEnum("BuilderFlag", ["TF32", "REFIT"], start=0)  # as TensorRT 11
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine", plugin=fake["plugin"])
    with pytest.raises(ValueError, match="--precision fp32"):
        onnx_to_engine(cfg, trt=trt, cuda=fake["cuda"])


def test_build_failure_carries_tensorrt_messages(tmp_path, physics_export, fake) -> None:
    fake["driver"].current_ctx = None  # the fake builder then fails like TensorRT without a CUDA context
    fake["driver"].ctx_refs = 0
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine", plugin=fake["plugin"])
    with pytest.raises(EngineBuildError, match="CUDA initialization failure"):
        onnx_to_engine(cfg, trt=fake["trt"], cuda=fake["cuda"])
    assert not (tmp_path / "m.engine").exists()


def test_no_builder_here_is_reported_with_the_reason() -> None:
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeUnavailableError, match="no TensorRT builder here") as err:
            import_tensorrt_builder()
        assert "Jetson" in str(err.value)
    else:
        pytest.skip("a tensorrt package is installed here")


def test_trtexec_for_tensorrt_8_uses_plugins_flag(physics_export) -> None:
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"])
    info = read_onnx_info(cfg.onnx)
    cmd = trtexec_command(cfg.onnx, cfg, engine_shapes(info, cfg), dynamic=False, plugin="lib.so", trt_major=8)
    assert "--plugins=lib.so" in cmd and cmd.startswith("trtexec --onnx=")
    assert f"--saveEngine={Path(str(cfg.onnx)[:-len('.trt.onnx')] + '.engine')}" in cmd


@pytest.mark.tensorrt
def test_real_builder_builds_an_engine(tmp_path, physics_export) -> None:
    """Needs TensorRT with its builder, a GPU, nvcc (for the plugin): a Jetson or a GPU workstation."""
    try:
        trt = import_tensorrt_builder()
        from export.cuda_backend import open_cuda

        cuda = open_cuda()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no TensorRT builder or GPU here: {e}")
    from export import psf_ext
    from export.runtime import OnnxRunner, TensorRTRunner

    gpu = cuda.device_info()
    plugin = psf_ext.build_plugin(cuda_archs=gpu.compute_capability.replace(".", ""))
    cfg = EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine", plugin=plugin, precision="fp32")
    result = onnx_to_engine(cfg, trt=trt, cuda=cuda)
    images = np.random.default_rng(0).random((5, SIZE[1], SIZE[0], 3), dtype=np.float32)
    got = TensorRTRunner(result.engine, plugin=plugin, trt=trt, cuda=cuda).predict(images, FOCUS)
    ref = OnnxRunner(physics_export.files["onnxruntime"]).predict(images, FOCUS)
    np.testing.assert_allclose(got.depth_m, ref.depth_m, atol=1e-3)
    np.testing.assert_allclose(got.confidence, ref.confidence, atol=1e-3)
