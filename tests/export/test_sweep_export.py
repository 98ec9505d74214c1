"""``python -m export onnx --sweep``: the relative-blur sweep inside the exported graph.

onnxruntime's swept depth matches the PyTorch path (``SweepingRunner`` around the PyTorch runner); the graph
adds only operators TensorRT's ONNX parser imports (8.5 and 10); metadata says so and reaches engines; refusals
are clear. The real TensorRT build is ``test_real_builder_builds_a_sweep_engine`` (marked ``tensorrt``).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest

from export_consts import FOCUS, RADIUS, SIZE
from export.metadata import OnnxModelInfo, read_onnx_info
from export.onnx_export import OnnxExportConfig, export_onnx, sweep_min_image_side
from export.runtime import OnnxRunner
from model.defocus_sweep import SweepConfig, SweepingRunner, graph_sweeps

# Operators the sweep may add, each in the ONNX-TensorRT operator tables of TensorRT 8.5 (JetPack 5) and 10
# (JetPack 6) (onnx/onnx-tensorrt docs/operators.md). Not in 8.5's: Mod, NonZero, ... (the sweep uses none).
TENSORRT_OPS = {
    "Abs", "Add", "ArgMin", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Equal", "Exp",
    "Expand", "Gather", "Greater", "Less", "LessOrEqual", "Log", "Max", "Min", "Mul", "Neg", "Not", "Or", "Pad",
    "Reciprocal", "ReduceMin", "ReduceSum", "Reshape", "Round", "Shape", "Slice", "Split", "Sqrt", "Squeeze", "Sub",
    "Transpose", "Unsqueeze", "Where",
}


@pytest.fixture(scope="session")
def sweep_export(tmp_path_factory, tiny_ckpt):
    """Physics graph with the sweep, both flavours, fixed 5 x 40 x 48, checked on the rendered Motorcycle scene."""
    out = tmp_path_factory.mktemp("sweep") / "swept.onnx"
    return export_onnx(OnnxExportConfig(out=out, checkpoint=tiny_ckpt, image_size=SIZE, psf_radius=RADIUS, threads=1,
                                        sweep=True))


@pytest.fixture(scope="session")
def sweep_net_dynamic(tmp_path_factory, tiny_ckpt):
    """Network + sweep, dynamic image size, traced at 64 x 60 (checked there and cropped to 59 x 57)."""
    out = tmp_path_factory.mktemp("sweepdyn") / "swept_net.onnx"
    return export_onnx(OnnxExportConfig(out=out, checkpoint=tiny_ckpt, image_size=(64, 60), graph="net",
                                        dynamic_size=True, threads=1, sweep=True))


def _planes(h, w, seed=3):
    """Texture on a near (1.3 m) and a far (3.2 m) plane, each frame blurred per plane by OpenCV with the
    thin-lens sigma (an independent renderer)."""
    import cv2

    from model.lens import LensProfile
    from model.optics import coc_sigma_px

    lens = LensProfile(0.05, 8.0, 1.2e-5)
    rng = np.random.default_rng(seed)
    aif = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 0.7)
    frames = []
    for f in FOCUS:
        frame = np.empty_like(aif)
        for d, cols in ((1.3, slice(0, w // 2)), (3.2, slice(w // 2, w))):
            s = float(coc_sigma_px(d, f, lens))
            frame[:, cols] = (cv2.GaussianBlur(aif, (0, 0), s, borderType=cv2.BORDER_REFLECT) if s > 0.05 else aif)[:, cols]
        frames.append(frame)
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


def test_sweep_export_metadata_and_check(sweep_export) -> None:
    assert set(sweep_export.files) == {"onnxruntime", "tensorrt"}
    check = sweep_export.check
    assert check["passed"] is True and check["depth_beyond_tolerance_fraction"] <= 1e-3
    assert check["residual_max_abs"] <= 1e-4 and check["confidence_max_abs"] <= 1e-3
    for flavour, path in sweep_export.files.items():
        model = onnx.load(str(path))
        assert [o.name for o in model.graph.output] == ["aif", "depth_m", "confidence", "residual", "rendered"]
        info = read_onnx_info(path)
        assert info.sweep["config"] == dataclasses.asdict(SweepConfig())
        assert info.sweep["working_range_m"] == pytest.approx([0.5, 12.0])
        assert info.sweep["min_image_side_px"] == 0  # fixed size
        assert "after the relative-blur sweep" in json.loads(info.props["outputs"])["depth_m"]["units"]
    # files without the entry (earlier exports) still parse, as not swept
    props = dict(read_onnx_info(sweep_export.files["onnxruntime"]).props)
    del props["sweep"]
    assert OnnxModelInfo.from_props(props).sweep is None


def test_onnxruntime_matches_the_pytorch_sweep_path(sweep_export, tiny_ckpt) -> None:
    """The exported graph against what `model.predict --sweep --runtime torch` runs, on a stack the export
    check did not see; and the swept depth is not the network's."""
    from model.runners import create_runner

    images = _planes(SIZE[1], SIZE[0])
    ort = OnnxRunner(sweep_export.files["onnxruntime"], threads=1)
    assert graph_sweeps(ort)
    got = ort.predict(images, FOCUS)
    torch_runner = create_runner("torch", tiny_ckpt, device="cpu", with_confidence=True)
    want = SweepingRunner(torch_runner).predict(images, FOCUS)
    close = np.abs(got.depth_m - want.depth_m) <= 1e-3
    assert close.mean() >= 0.995  # the rest: argmin near-ties (checked to be one hypothesis apart below)
    step = np.log(12.0 / 0.5) / (SweepConfig().hypotheses - 1)
    assert np.all(np.abs(np.log(got.depth_m / want.depth_m)) <= step * 1.01)
    np.testing.assert_allclose(got.aif, want.aif, atol=1e-3)
    assert np.abs(got.confidence - want.confidence)[close].max() <= 1e-2  # the physics check of the swept depth
    net = create_runner("torch", tiny_ckpt, device="cpu", with_confidence=False).predict(images, FOCUS)
    assert np.mean(np.abs(net.depth_m - got.depth_m) > 1e-3) > 0.5
    # exported graphs that sweep are not swept again
    with pytest.raises(ValueError, match="already swept"):
        SweepingRunner(ort)


def test_check_allows_a_few_argmin_ties_only(sweep_export, loaded, monkeypatch) -> None:
    """The export check of a swept graph: a neighbouring hypothesis at a few pixels passes, at many fails."""
    from dataclasses import replace

    from export.onnx_export import check_onnx

    images = _planes(SIZE[1], SIZE[0])
    real = OnnxRunner.predict
    step = np.exp(np.log(12.0 / 0.5) / (SweepConfig().hypotheses - 1))

    def run(n_pixels):
        def predict(self, images, focus_m):
            pred = real(self, images, focus_m)
            d = pred.depth_m.copy()
            d.reshape(-1)[:n_pixels] *= step  # the next hypothesis
            return replace(pred, depth_m=d)

        monkeypatch.setattr(OnnxRunner, "predict", predict)
        return check_onnx(sweep_export.files["onnxruntime"], loaded, images, np.array(FOCUS, np.float32), threads=1)

    one = run(1)
    assert one["passed"] and one["depth_max_abs_m"] > 1e-3
    assert one["depth_beyond_tolerance_fraction"] == pytest.approx(1 / (SIZE[0] * SIZE[1]))
    many = run(SIZE[0] * 4)
    assert not many["passed"] and many["depth_beyond_tolerance_fraction"] > 1e-3


def test_sweep_uses_only_operators_tensorrt_imports(sweep_export) -> None:
    swept = onnx.load(str(sweep_export.files["tensorrt"]))
    nodes = [n for n in swept.graph.node if n.name.startswith("/sweep/")]  # the exporter names nodes by module
    assert len(nodes) > 1000
    ops = {n.op_type for n in nodes}
    assert {"ArgMin", "Conv", "Gather", "Pad"} <= ops
    assert ops <= TENSORRT_OPS, sorted(ops - TENSORRT_OPS)
    assert [n.op_type for n in swept.graph.node].count("GaussPSF") == 1  # no other custom node
    assert {o.domain: o.version for o in swept.opset_import}[""] == 17
    constants = {i.name for i in swept.graph.initializer} | {o for n in swept.graph.node if n.op_type == "Constant"
                                                           for o in n.output}
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert len(convs) > 80 and all(n.input[1] in constants for n in convs)  # weights TensorRT can fold
    for n in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Pad":
            assert attrs.get("mode") == b"reflect"  # TensorRT >= 8.5 imports it (SliceMode kREFLECT)
        if n.op_type == "ArgMin":
            assert attrs.get("select_last_index", 0) == 0


def test_dynamic_size_sweep_export(sweep_net_dynamic, tiny_ckpt) -> None:
    check = sweep_net_dynamic.check
    assert check["passed"] is True and check["dynamic_checks"][0]["passed"] is True
    assert check["dynamic_checks"][0]["shape"][1:3] == [57, 59]
    info = read_onnx_info(sweep_net_dynamic.files["any"])
    low = sweep_min_image_side()
    assert info.sweep["min_image_side_px"] == low == SweepConfig().max_pad_px() + 1 == 25  # 24 px: cascaded kernels
    info.check_input_shape(5, low, 200)
    with pytest.raises(ValueError, match=f"at least {low} pixels"):
        info.check_input_shape(5, low - 1, 200)


def test_sweep_export_refusals(tmp_path, tiny_ckpt) -> None:
    with pytest.raises(ValueError, match="fixed stack size"):
        OnnxExportConfig(out=tmp_path / "a.onnx", checkpoint=tiny_ckpt, sweep=True, dynamic_stack=True).validate()
    with pytest.raises(ValueError, match="at least 25 pixels"):
        OnnxExportConfig(out=tmp_path / "b.onnx", checkpoint=tiny_ckpt, sweep=True, dynamic_size=True,
                         image_size=(32, 24)).validate()
    with pytest.raises(ValueError, match="at least 25 pixels"):  # the lens profile's size is used when none is given
        from model.checkpoint import load_checkpoint

        loaded = load_checkpoint(tiny_ckpt)
        loaded.lens = dataclasses.replace(loaded.lens, image_size=(32, 24))
        export_onnx(OnnxExportConfig(out=tmp_path / "c.onnx", sweep=True, dynamic_size=True, check=False), loaded)
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_cli_flag(tmp_path, tiny_ckpt, capsys) -> None:
    from export.__main__ import build_parser, main

    args = build_parser().parse_args(["onnx", "--out", "x.onnx", "--sweep"])
    assert args.sweep is True and build_parser().parse_args(["onnx", "--out", "x.onnx"]).sweep is False
    out = tmp_path / "cli.onnx"
    assert main(["onnx", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--graph", "net", "--size", "48x40",
                 "--sweep", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert read_onnx_info(out).sweep is not None and "PASSED" in printed and "swept in the graph" in printed
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sweep"]["config"]["window"] == 15


def test_engine_keeps_the_sweep_metadata(tmp_path, sweep_export) -> None:
    from export.cuda_backend import CudaPythonBackend
    from export.engine import EngineConfig, onnx_to_engine
    from export.metadata import read_engine_info
    from export.runtime import TensorRTRunner
    from fakes import FakeCudaDriver, make_fake_tensorrt, write_plugin_standin

    driver = FakeCudaDriver()
    trt = make_fake_tensorrt("10.3.0", driver)
    plugin = write_plugin_standin(tmp_path / "libgausspsf_trt.so")
    result = onnx_to_engine(EngineConfig(onnx=sweep_export.files["tensorrt"], out=tmp_path / "m.engine", plugin=plugin),
                            trt=trt, cuda=CudaPythonBackend(driver=driver))
    assert read_engine_info(result.engine).onnx.sweep is not None
    runner = TensorRTRunner(result.engine, trt=make_fake_tensorrt("10.3.0", driver),
                            cuda=CudaPythonBackend(driver=driver), plugin=plugin)
    assert graph_sweeps(runner)
    images = _planes(SIZE[1], SIZE[0])
    got = runner.predict(images, FOCUS)  # the fake engine computes with onnxruntime
    ref = OnnxRunner(sweep_export.files["onnxruntime"], threads=1).predict(images, FOCUS)
    np.testing.assert_array_equal(got.depth_m, ref.depth_m)


@pytest.mark.tensorrt
def test_real_builder_builds_a_sweep_engine(tmp_path, sweep_export) -> None:
    """Needs TensorRT with its builder, a GPU, nvcc (for the plugin): a Jetson or a GPU workstation. fp32 within
    1 mm of onnxruntime at 99.5 % of pixels; fp16 with the median relative depth difference within 1 %."""
    try:
        from export.cuda_backend import open_cuda
        from export.engine import import_tensorrt_builder

        trt = import_tensorrt_builder()
        cuda = open_cuda()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no TensorRT builder or GPU here: {e}")
    from export import psf_ext
    from export.engine import EngineConfig, onnx_to_engine
    from export.runtime import TensorRTRunner

    plugin = psf_ext.build_plugin(cuda_archs=cuda.device_info().compute_capability.replace(".", ""))
    images = _planes(SIZE[1], SIZE[0])
    ref = OnnxRunner(sweep_export.files["onnxruntime"]).predict(images, FOCUS)
    for precision in ("fp32", "fp16"):
        cfg = EngineConfig(onnx=sweep_export.files["tensorrt"], out=tmp_path / f"{precision}.engine", plugin=plugin,
                           precision=precision)
        result = onnx_to_engine(cfg, trt=trt, cuda=cuda)
        got = TensorRTRunner(result.engine, plugin=plugin, trt=trt, cuda=cuda).predict(images, FOCUS)
        if precision == "fp32":
            assert np.mean(np.abs(got.depth_m - ref.depth_m) <= 1e-3) >= 0.995
        else:
            assert np.median(np.abs(got.depth_m / ref.depth_m - 1)) <= 0.01
