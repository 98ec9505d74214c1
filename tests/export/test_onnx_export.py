"""ONNX export: metadata, flavours, onnxruntime against PyTorch (network and physics check), dynamic axes, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch

from export_consts import FOCUS, RADIUS, SIZE
from export.metadata import MetadataError, OnnxModelInfo, read_onnx_info, read_sidecar
from export.onnx_export import TOLERANCES, OnnxExportConfig, check_onnx, export_onnx, reference_stack
from export.runtime import OnnxRunner
from export.targets import ORT_DOMAIN, PLUGIN_ATTRIBUTES, graph_flavour, psf_nodes, to_onnxruntime_flavour, to_tensorrt_flavour


def test_physics_export_writes_both_flavours_with_metadata(physics_export, export_lens) -> None:
    files = physics_export.files
    assert set(files) == {"onnxruntime", "tensorrt"}
    assert files["tensorrt"].name == "daifnet.trt.onnx"
    for flavour, path in files.items():
        model = onnx.load(str(path))
        assert model.ir_version <= 13  # onnxruntime-extensions refuses newer IR versions
        assert {o.domain: o.version for o in model.opset_import}[""] >= 17
        props = {p.key: p.value for p in model.metadata_props}
        for key in ("lens", "focus_distances_m", "working_range_m", "input_layout", "value_range", "outputs",
                    "package_version", "psf", "confidence"):
            assert key in props, key
        info = OnnxModelInfo.from_props(props, path)
        assert info.target == flavour and info.graph == "physics"
        assert info.lens.to_dict() == export_lens.to_dict()
        assert list(info.focus_m) == FOCUS
        assert info.working_range_m == (0.5, 12.0)
        assert info.stack_size == 5 and info.image_size == SIZE and info.psf_radius == RADIUS
        assert json.loads(props["outputs"])["depth_m"]["units"].startswith("metric depth, metres")
        assert [o.name for o in model.graph.output] == ["aif", "depth_m", "confidence", "residual", "rendered"]


def test_flavours_differ_only_in_the_gauss_psf_node(physics_export) -> None:
    ort_model = onnx.load(str(physics_export.files["onnxruntime"]))
    trt_model = onnx.load(str(physics_export.files["tensorrt"]))
    assert graph_flavour(ort_model) == "onnxruntime" and graph_flavour(trt_model) == "tensorrt"
    (ort_node,), (trt_node,) = psf_nodes(ort_model), psf_nodes(trt_model)
    assert ort_node.domain == ORT_DOMAIN and trt_node.domain == ""
    trt_attrs = {a.name: onnx.helper.get_attribute_value(a) for a in trt_node.attribute}
    assert trt_attrs == {"radius": RADIUS, **{k: v.encode() for k, v in PLUGIN_ATTRIBUTES.items()}}
    assert {a.name for a in ort_node.attribute} == {"radius"}
    assert ORT_DOMAIN not in {o.domain for o in trt_model.opset_import}
    # everything else is identical, and the conversion round-trips
    strip = [n for n in ort_model.graph.node if n.op_type != "GaussPSF"]
    assert strip == [n for n in trt_model.graph.node if n.op_type != "GaussPSF"]
    back = to_onnxruntime_flavour(trt_model)
    assert list(back.graph.node) == list(ort_model.graph.node)
    assert to_tensorrt_flavour(back).graph == trt_model.graph
    onnx.checker.check_model(back)


def test_check_passed_and_is_stored_beside_the_file(physics_export) -> None:
    check = physics_export.check
    assert check["passed"] is True
    assert "Motorcycle" in check["stack"] and check["shape"] == [5, SIZE[1], SIZE[0], 3]
    assert check["depth_max_abs_m"] <= TOLERANCES["depth_m"] and check["aif_max_abs"] <= TOLERANCES["aif"]
    assert check["residual_max_abs"] <= TOLERANCES["residual"] and check["confidence_max_abs"] <= TOLERANCES["confidence"]
    assert "physics_check" in check["physics_reference"]
    side = read_sidecar(physics_export.files["onnxruntime"])
    assert side["check"]["depth_max_abs_m"] == check["depth_max_abs_m"]
    assert side["metadata"]["format"] == "daif-onnx/1"
    assert read_sidecar(physics_export.files["tensorrt"])["check"]["passed"] is True


def test_onnxruntime_physics_graph_matches_physics_check(physics_export, loaded) -> None:
    """A second stack (real texture, different frames) and every GaussPSF backend, against PyTorch."""
    from model.confidence import physics_check

    images, focus, _ = reference_stack(loaded.lens, FOCUS, SIZE, (0.5, 12.0))
    images = np.ascontiguousarray(images[:, ::-1])  # flipped scene: a stack the export check did not see
    x = torch.from_numpy(images).permute(0, 3, 1, 2).unsqueeze(0)
    f = torch.tensor([FOCUS], dtype=torch.float32)
    with torch.inference_mode():
        out = loaded.net(x, f)
        ref = physics_check(x, f, out.aif, out.depth_m, loaded.lens, max_radius=RADIUS)
    from export.ort_native import native_status

    native, why = native_status()
    if native is None:
        warnings.warn(f"native GaussPSF op not checked: {why}")
    for backend in ("native", "torch", "host") if native is not None else ("torch", "host"):
        runner = OnnxRunner(physics_export.files["onnxruntime"], threads=1, psf_backend=backend)
        assert runner.psf_backend == backend
        pred = runner.predict(images, focus)
        np.testing.assert_allclose(pred.depth_m, out.depth_m[0, 0].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(pred.aif, out.aif[0].permute(1, 2, 0).numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(pred.residual, ref.residual[0, 0].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(pred.confidence, ref.confidence[0, 0].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(pred.rendered, ref.rendered[0].permute(0, 2, 3, 1).numpy(), atol=1e-5, rtol=0)
    assert float(ref.confidence.std()) > 1e-3  # not a constant map


def test_dynamic_export_runs_at_other_sizes_and_stack_counts(dynamic_export, loaded) -> None:
    check = dynamic_export.check
    assert check["passed"] and len(check["dynamic_checks"]) == 2
    assert {tuple(c["shape"][:3]) for c in check["dynamic_checks"]} == {(5, 37, 43), (4, 40, 48)}
    info = read_onnx_info(dynamic_export.files["onnxruntime"])
    assert info.stack_size is None and info.image_size is None
    rng = np.random.default_rng(3)
    images = rng.random((3, 33, 52, 3), dtype=np.float32)  # odd size, 3 frames
    focus = np.array([1.2, 2.0, 5.0])
    report = check_onnx(dynamic_export.files["onnxruntime"], loaded, images, focus, threads=1)
    assert report["passed"], report


def test_dynamic_export_has_no_mod_nodes(dynamic_export) -> None:
    """The in-graph padding rounds up by integer division: ONNX Mod is not in TensorRT 8.5 (JetPack 5)."""
    ops = {n.op_type for n in onnx.load(str(dynamic_export.files["onnxruntime"])).graph.node}
    assert "Mod" not in ops and "Pad" in ops


def test_network_only_export_and_torch_confidence(net_export, loaded, stack) -> None:
    path = net_export.files["any"]
    info = read_onnx_info(path)
    assert info.graph == "net" and info.target == "any" and info.psf_radius is None
    assert not psf_nodes(onnx.load(str(path)))
    assert net_export.check["passed"]
    images, focus = stack
    pred = OnnxRunner(path, threads=1).predict(images, focus)  # confidence computed by PyTorch
    assert pred.confidence is not None and pred.confidence.shape == images.shape[1:3]
    assert OnnxRunner(path, with_confidence=False, threads=1).predict(images, focus).confidence is None


def test_fixed_export_refuses_other_shapes_with_the_fix(physics_export, stack) -> None:
    runner = OnnxRunner(physics_export.files["onnxruntime"], threads=1)
    images, focus = stack
    with pytest.raises(ValueError, match="--dynamic-size"):
        runner.predict(images[:, :32], focus)
    with pytest.raises(ValueError, match="--dynamic-stack"):
        runner.predict(images[:4], focus[:4])


@pytest.mark.filterwarnings("ignore")
def test_onnx_without_metadata_is_refused_with_the_fix(tmp_path, loaded) -> None:
    from export.physics_graph import ExportModule

    path = tmp_path / "plain.onnx"
    x, f = torch.rand(1, 5, 3, 40, 48), torch.tensor([FOCUS])
    torch.onnx.export(ExportModule(loaded.net).eval(), (x, f), str(path), dynamo=False, opset_version=17,
                      input_names=["images", "focus_m"], output_names=["aif", "depth_m"])
    with pytest.raises(MetadataError, match="python -m export onnx") as err:
        OnnxRunner(path)
    assert "--runtime torch" in str(err.value)


def test_tensorrt_flavour_in_onnxruntime_names_the_fallback(physics_export) -> None:
    with pytest.raises(ValueError, match="TensorRT flavour") as err:
        OnnxRunner(physics_export.files["tensorrt"])
    assert str(physics_export.files["onnxruntime"]) in str(err.value)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(opset=13), "opset"),
    (dict(target="coreml"), "unknown ONNX target"),
    (dict(graph="net", psf_radius=3), "physics graph"),
    (dict(image_size=(4, 40)), "at least 8x8"),
    (dict(stack_size=1), "at least 2 frames"),
    (dict(psf_radius=99), "psf radius"),
])
def test_config_is_validated_before_any_work(tmp_path, kwargs, match) -> None:
    cfg = OnnxExportConfig(out=tmp_path / "m.onnx", **kwargs)
    with pytest.raises(ValueError, match=match):
        export_onnx(cfg)
    assert not any(tmp_path.iterdir())


def test_bad_output_name_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.onnx"):
        OnnxExportConfig(out=tmp_path / "m.onx").validate()


def test_check_stack_from_a_focal_stack_folder(tmp_path, export_lens) -> None:
    from model.formats import FocalStack, write_stack

    rng = np.random.default_rng(0)
    images = rng.random((7, 30, 40, 3), dtype=np.float32)
    focus = np.array([0.8, 1.0, 1.4, 2.4, 3.0, 4.2, 6.5])
    folder = write_stack(tmp_path / "s", FocalStack(images=images, focus_m=focus, lens=export_lens))
    got, got_focus, desc = reference_stack(export_lens, FOCUS, (48, 40), (0.5, 12.0), folder)
    assert got.shape == (5, 40, 48, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got_focus, [1.0, 1.4, 2.4, 4.2, 6.5])
    assert str(folder) in desc
