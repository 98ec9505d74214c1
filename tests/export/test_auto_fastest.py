"""``runtime auto`` picks the fastest runtime that can run the model here, and says why."""

from __future__ import annotations

import logging
import shutil

import pytest

from export import ort_native
from export.runtime import rank_auto_candidates
from model.runners import auto_candidates, create_runner

_LIB, _WHY = ort_native.native_status()


def _beside(tmp_path, ckpt, onnx_file, name="m"):
    shutil.copy(ckpt, tmp_path / f"{name}.pt")
    shutil.copy(onnx_file, tmp_path / f"{name}.onnx")
    return tmp_path / f"{name}.pt"


@pytest.mark.skipif(_LIB is None, reason=f"native GaussPSF op unavailable here: {_WHY}")
def test_checkpoint_with_its_physics_export_beside_runs_onnxruntime_and_says_why(tmp_path, tiny_ckpt, physics_export,
                                                                               caplog):
    ck = _beside(tmp_path, tiny_ckpt, physics_export.files["onnxruntime"])
    candidates = auto_candidates(ck)
    reasons = rank_auto_candidates(candidates, torch_device="cpu")
    assert [k for k, _ in candidates] == ["onnxruntime", "torch"]
    assert "native GaussPSF op" in reasons[candidates[0]] and "faster than PyTorch" in reasons[candidates[0]]
    with caplog.at_level(logging.INFO, logger="model.runners"):
        runner = create_runner("auto", ck, device="cpu")
    assert runner.name == "onnxruntime" and runner.psf_backend == "native"
    assert "runtime: onnxruntime" in caplog.text and "native GaussPSF op" in caplog.text


def test_export_of_another_checkpoint_is_not_used(tmp_path, tiny_ckpt, physics_export, caplog):
    ck = _beside(tmp_path, tiny_ckpt, physics_export.files["onnxruntime"])
    ck.write_bytes(ck.read_bytes() + b"\0")  # another checkpoint file (its SHA-256 differs from the recorded one)
    candidates = auto_candidates(ck)
    reasons = rank_auto_candidates(candidates, torch_device="cpu")
    assert [k for k, _ in candidates] == ["torch", "onnxruntime"]
    assert "not exported from this checkpoint" in reasons[candidates[1]]


def test_network_only_export_ranks_above_pytorch_on_the_cpu(tmp_path, tiny_ckpt, net_export):
    ck = _beside(tmp_path, tiny_ckpt, net_export.files["any"])
    candidates = auto_candidates(ck)
    reasons = rank_auto_candidates(candidates, torch_device="cpu")
    assert [k for k, _ in candidates] == ["onnxruntime", "torch"]
    assert "physics check runs in PyTorch" in reasons[candidates[0]]


def test_without_the_native_op_pytorch_beats_the_python_op(tmp_path, tiny_ckpt, physics_export, monkeypatch):
    ck = _beside(tmp_path, tiny_ckpt, physics_export.files["onnxruntime"])
    monkeypatch.setattr(ort_native, "native_status", lambda: (None, "no onnxruntime headers (test)"))
    candidates = auto_candidates(ck)
    reasons = rank_auto_candidates(candidates, torch_device="cpu")
    assert [k for k, _ in candidates] == ["torch", "onnxruntime"]
    assert "Python op" in reasons[candidates[1]] and "no onnxruntime headers (test)" in reasons[candidates[1]]


def test_pytorch_on_a_gpu_ranks_above_onnxruntime_on_the_cpu(tmp_path, tiny_ckpt, physics_export):
    ck = _beside(tmp_path, tiny_ckpt, physics_export.files["onnxruntime"])
    (tmp_path / "m.engine").write_bytes(b"an engine")
    candidates = auto_candidates(ck)
    reasons = rank_auto_candidates(candidates, torch_device="cuda")
    assert [k for k, _ in candidates] == ["tensorrt", "torch", "onnxruntime"]
    assert "GPU" in reasons[candidates[0]] and "CUDA" in reasons[candidates[1]]
