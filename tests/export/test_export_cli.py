"""``python -m export`` commands, the selftest, and ``python -m model.predict --runtime onnxruntime`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export_consts import FOCUS, SIZE
from export.__main__ import main
from fakes import FakeCudaDriver, make_fake_tensorrt, write_plugin_standin

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(map(str, (*pythonpath, REPO))))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)  # a hang guard


def _without_tensorrt(folder: Path) -> Path:
    """A folder that, first on ``PYTHONPATH``, makes ``import tensorrt`` (and the lean runtime) fail as where
    TensorRT is not installed, whether or not this machine has it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tensorrt", "tensorrt_lean"):
        (folder / f"{name}.py").write_text(f"raise ImportError('{name} hidden by the test')\n")
    return folder


def test_help_parses_without_heavy_imports() -> None:
    code = ("import sys; from export.__main__ import build_parser; "
            "build_parser().parse_args(['onnx', '--out', 'x.onnx']); "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules))")
    out = _run("-c", code)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0


def test_bad_input_is_one_line_on_stderr_with_exit_2(tmp_path) -> None:
    out = _run("-m", "export", "onnx", "--out", str(tmp_path / "x.txt"))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert ".onnx" in out.stderr


def test_engine_without_builder_prints_trtexec_then_explains(physics_export, tmp_path) -> None:
    out = _run("-m", "export", "engine", "--onnx", str(physics_export.files["tensorrt"]), "--out",
               str(tmp_path / "m.engine"), "--plugin", str(write_plugin_standin(tmp_path / "p.so")),
               pythonpath=(_without_tensorrt(tmp_path / "no_trt"),))
    assert "trtexec --onnx=" in out.stdout and "--fp16" in out.stdout
    assert out.returncode == 2 and "no TensorRT builder here" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m.engine").exists()


def test_engine_with_builder_prints_trtexec_then_builds(physics_export, tmp_path, monkeypatch, capsys) -> None:
    """The same command where TensorRT can build (a faithful fake of TensorRT and the CUDA driver)."""
    import export.cuda_backend
    import export.engine
    from export.cuda_backend import CudaPythonBackend

    driver = FakeCudaDriver()
    monkeypatch.setattr(export.engine, "import_tensorrt_builder", lambda: make_fake_tensorrt("10.3.0", driver))
    monkeypatch.setattr(export.cuda_backend, "open_cuda", lambda *a, **k: CudaPythonBackend(driver=driver))
    engine = tmp_path / "m.engine"
    code = main(["engine", "--onnx", str(physics_export.files["tensorrt"]), "--out", str(engine),
                 "--plugin", str(write_plugin_standin(tmp_path / "p.so"))])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "trtexec --onnx=" in text and "--fp16" in text and f"wrote {engine} (fp16" in text
    assert engine.is_file() and (tmp_path / "m.engine.json").is_file()


def test_onnx_command_and_info(tiny_ckpt, tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["onnx", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--size", "48x40", "--psf-radius", "4",
                 "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (onnxruntime)" in text and "m.trt.onnx (tensorrt)" in text and "PASSED" in text
    assert "GaussPSF radius 4 px" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["focus_distances_m"] == FOCUS and info["image_size"] == list(SIZE) and info["check"]["passed"]
    assert main(["engine", "--onnx", str(out), "--print-only", "--precision", "fp32"]) == 0
    text = capsys.readouterr().out
    assert "m.trt.onnx" in text and "--fp16" not in text


def test_info_on_an_engine(tmp_path, physics_export, capsys) -> None:
    from export.cuda_backend import CudaPythonBackend
    from export.engine import EngineConfig, onnx_to_engine

    driver = FakeCudaDriver()
    result = onnx_to_engine(EngineConfig(onnx=physics_export.files["tensorrt"], out=tmp_path / "m.engine",
                                         plugin=write_plugin_standin(tmp_path / "p.so")),
                            trt=make_fake_tensorrt("10.3.0", driver), cuda=CudaPythonBackend(driver=driver))
    assert main(["info", str(result.engine)]) == 0
    text = capsys.readouterr().out
    assert "10.3.0" in text and "Orin (compute 8.7)" in text and "fp16" in text and "test-50mm" in text


def test_predict_with_onnxruntime_end_to_end(tmp_path, physics_export, tiny_ckpt, export_lens) -> None:
    """`python -m model.predict --runtime onnxruntime --model X.onnx` writes what the torch runtime writes."""
    from model.formats import FocalStack, write_stack
    from model.predict import main as predict_main

    rng = np.random.default_rng(7)
    data = tmp_path / "data"
    for name in ("a", "b"):
        write_stack(data / name, FocalStack(images=rng.random((5, SIZE[1], SIZE[0], 3), dtype=np.float32),
                                            focus_m=np.array(FOCUS), lens=export_lens))
    assert predict_main(["--data", str(data), "--out", str(tmp_path / "ort"), "--runtime", "onnxruntime",
                         "--model", str(physics_export.files["onnxruntime"]), "--no-figures"]) == 0
    assert predict_main(["--data", str(data), "--out", str(tmp_path / "pt"), "--runtime", "torch",
                         "--model", str(tiny_ckpt), "--no-figures", "--device", "cpu"]) == 0
    for name in ("a", "b"):
        d_ort = np.load(tmp_path / "ort" / name / "depth.npy")
        d_pt = np.load(tmp_path / "pt" / name / "depth.npy")
        assert d_ort.shape == (SIZE[1], SIZE[0])
        np.testing.assert_allclose(d_ort, d_pt, atol=1e-3, rtol=0)  # within 1 mm
        conf = np.load(tmp_path / "ort" / name / "confidence.npy")
        assert conf.shape == d_ort.shape and 0.0 <= conf.min() and conf.max() <= 1.0
        assert (tmp_path / "ort" / name / "aif.png").is_file()
    # `auto` picks onnxruntime from the file name
    assert predict_main(["--data", str(data), "--out", str(tmp_path / "auto"), "--model",
                         str(physics_export.files["onnxruntime"]), "--no-figures"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "auto" / "a" / "depth.npy"), np.load(tmp_path / "ort" / "a" / "depth.npy"))


def test_selftest_with_fakes_runs_every_step(tiny_ckpt, tmp_path) -> None:
    from export.cuda_backend import CudaPythonBackend
    from export.selftest import SelftestConfig, format_steps, run_selftest

    driver = FakeCudaDriver()
    cfg = SelftestConfig(checkpoint=tiny_ckpt, workdir=tmp_path, image_size=SIZE, repeats=1, max_psf_radius=6,
                         threads=1, plugin=write_plugin_standin(tmp_path / "p.so"))
    steps = run_selftest(cfg, trt=make_fake_tensorrt("10.3.0", driver), cuda=CudaPythonBackend(driver=driver))
    status = {s.name: s.status for s in steps}
    assert status == {"plugin build": "skipped", "plugin host check": "ok", "plugin registry": "ok",
                      "onnx export": "ok", "onnxruntime latency": "ok", "engine build": "ok", "tensorrt check": "ok"}, \
        format_steps(steps)
    assert "ms median" in steps[-1].detail and (tmp_path / "daifnet.engine").is_file()


def test_selftest_here_reports_what_it_skipped(tiny_ckpt, tmp_path, capsys, monkeypatch) -> None:
    """Where TensorRT is not installed (hidden here, whether or not this machine has it); where it is, every
    step runs: ``test_selftest_with_fakes_runs_every_step``."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # ``import tensorrt`` raises ImportError
    monkeypatch.setitem(sys.modules, "tensorrt_lean", None)
    code = main(["selftest", "--checkpoint", str(tiny_ckpt), "--workdir", str(tmp_path), "--size", "48x40",
                 "--no-plugin", "--repeats", "1", "--max-psf-radius", "6", "--threads", "1",
                 "--json", str(tmp_path / "report.json")])
    text = capsys.readouterr().out
    report = {s["name"]: s for s in json.loads((tmp_path / "report.json").read_text())}
    assert code == 0, text
    assert report["onnx export"]["status"] == "ok" and report["onnxruntime latency"]["status"] == "ok"
    assert report["plugin build"]["status"] == "skipped"
    assert report["engine build"]["status"] == "skipped" and "TensorRT" in report["engine build"]["detail"]
    assert report["tensorrt check"]["status"] == "skipped"
    assert "skipped" in text.splitlines()[-2]
