"""``create_runner("auto")``: TensorRT engine, then onnxruntime, then PyTorch, skipping what cannot run."""

import shutil

import pytest

from model.runners import auto_candidates, create_runner


def test_auto_order_finds_exports_beside_the_checkpoint(tmp_path, tiny_ckpt, physics_export):
    ck = tmp_path / "m.pt"
    shutil.copy(tiny_ckpt, ck)
    assert [k for k, _ in auto_candidates(ck)] == ["torch"]
    shutil.copy(physics_export.files["onnxruntime"], tmp_path / "m.onnx")
    (tmp_path / "m.engine").write_bytes(b"not an engine for this machine")
    order = auto_candidates(ck)
    assert [k for k, _ in order] == ["torch", "tensorrt", "onnxruntime"]  # the file named first
    assert [k for k, _ in auto_candidates(tmp_path / "m.engine")] == ["tensorrt", "onnxruntime", "torch"]


def test_auto_skips_an_unusable_engine_and_uses_onnxruntime(tmp_path, tiny_ckpt, physics_export, caplog):
    shutil.copy(tiny_ckpt, tmp_path / "m.pt")
    shutil.copy(physics_export.files["onnxruntime"], tmp_path / "m.onnx")
    (tmp_path / "m.engine").write_bytes(b"not an engine for this machine")
    runner = create_runner("auto", tmp_path / "m.engine")
    assert runner.name == "onnxruntime"
    assert "tensorrt is not usable" in caplog.text


def test_auto_with_only_a_checkpoint_is_torch(tiny_ckpt):
    assert create_runner("auto", tiny_ckpt).name == "torch"


def test_explicit_runtime_errors_are_not_swallowed(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"x")
    with pytest.raises(Exception) as e:
        create_runner("tensorrt", tmp_path / "m.engine")
    assert "engine" in str(e.value).lower() or "tensorrt" in str(e.value).lower()
