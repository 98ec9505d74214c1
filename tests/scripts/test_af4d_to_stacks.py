"""scripts/af4d_to_stacks.py on small synthetic focus sweeps: a smoothed-noise texture magnified by known
factors (focus breathing) and blurred differently per frame, saved as IMAGE_01_<dioptres>.jpg. The
estimated magnifications, the written focal-stack/1 folder (focus = 1/dioptre, lens pitch rescaled to the
written size), that registration aligns the frames, and that bad input is refused with one line and
exit code 2, leaving nothing behind."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from model.formats import read_stack

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "af4d_to_stacks.py"

W, H = 400, 240
# the sweep (dioptres) and its breathing: m = 1 + 0.008 (D - 1); the default request 1, 2.25, 3.5, 4.75, 6
# picks 1.0 ... 6.0, magnified 1.00, 1.01, 1.02, 1.03, 1.04 relative to the 1 D frame
SWEEP_D = [0.5, 1.0, 1.6, 2.25, 2.9, 3.5, 4.1, 4.75, 5.4, 6.0]
PICKED_D = [1.0, 2.25, 3.5, 4.75, 6.0]
BLUR = {0.5: 0.8, 1.0: 0.4, 1.6: 0.9, 2.25: 1.2, 2.9: 0.7, 3.5: 0.6, 4.1: 1.0, 4.75: 1.5, 5.4: 0.8, 6.0: 1.0}


def _magnification(d: float) -> float:
    return 1.0 + 0.008 * (d - 1.0)


def _load_script():
    spec = importlib.util.spec_from_file_location("af4d_to_stacks", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["af4d_to_stacks"] = mod  # dataclasses look the module up while the class is made
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def af4d():
    return _load_script()


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """(h, w, 3) float32 in [0, 1]: smoothed noise at two scales, tinted per channel."""
    import cv2

    grey = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 4.0) * 6.0
    grey += cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5) * 2.0
    grey = (grey - grey.min()) / (grey.max() - grey.min())
    tint = np.array([1.0, 0.85, 0.7], np.float32)
    return np.clip(grey[:, :, None] * tint + 0.1 * cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3.0), 0, 1)


def _magnify(img: np.ndarray, m: float) -> np.ndarray:
    """out(x) = img(c + (x - c) / m): ``img`` magnified by ``m`` about the centre."""
    import cv2

    h, w = img.shape[:2]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    s = 1.0 / m
    a = np.array([[s, 0, cx - s * cx], [0, s, cy - s * cy]], np.float64)
    return cv2.warpAffine(img, a, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)


def _save_jpeg(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path, quality=95)


def _make_scene(folder: Path, seed: int = 0) -> Path:
    import cv2

    folder.mkdir(parents=True)
    base = _texture(np.random.default_rng(seed), W, H)
    for d in SWEEP_D:
        img = cv2.GaussianBlur(_magnify(base, _magnification(d)), (0, 0), BLUR[d])
        _save_jpeg(folder / f"IMAGE_01_{d:011.8f}.jpg", img)
    return folder


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("af4d_src")
    return [_make_scene(root / "sceneA", 0), _make_scene(root / "sceneB", 1)]


@pytest.fixture(scope="module")
def converted(af4d, scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("af4d_out") / "stacks"
    cfg = af4d.ConvertConfig(scenes=tuple(scenes), out=out, width=160, pitch_um=1.8, quiet=True)
    return cfg, af4d.convert(cfg)


def test_names_are_parsed_and_nearest_frames_picked(af4d, scenes):
    frames = af4d.parse_scene(scenes[0])
    assert [f.dioptres for f in frames] == SWEEP_D
    picked = af4d.select_frames(frames, af4d.DEFAULT_DIOPTRES)
    assert [f.dioptres for f in picked] == PICKED_D
    assert [f.dioptres for f in af4d.select_frames(frames, [1.2, 3.0, 0.3])] == [1.0, 2.9, 0.5]


def test_magnifications_are_estimated_within_0_003(converted):
    _, results = converted
    for res in results:
        assert [f.dioptres for f in res.frames] == sorted(PICKED_D, reverse=True)  # nearest focus first
        assert res.reference.dioptres == 1.0
        est = np.array([r.magnification for r in res.registrations])
        truth = np.array([_magnification(f.dioptres) for f in res.frames])
        assert np.abs(est - truth).max() < 0.003, (est, truth)
        assert res.breathing_b == pytest.approx(0.008, abs=0.0006)
        assert res.breathing_rms < 0.002


def test_written_stack_reads_back_with_focus_and_scaled_pitch(converted):
    cfg, results = converted
    assert sorted(p.name for p in cfg.out.iterdir()) == ["sceneA", "sceneB"]  # no temporary folders left
    for res in results:
        stack = read_stack(cfg.out / res.scene.name)
        assert len(stack) == 5 and stack.depth is None and stack.aif is None
        assert stack.focus_m == pytest.approx(sorted(1.0 / d for d in PICKED_D))
        w, h = stack.size
        assert (w, h) == (160, 96) == res.size and stack.lens.image_size == (w, h)  # the source's aspect
        assert stack.lens.focal_length_m == pytest.approx(0.0043) and stack.lens.f_number == pytest.approx(1.9)
        x0, y0, cw, ch = res.crop
        assert stack.lens.pixel_pitch_m == pytest.approx(1.8e-6 * cw / w)
        # the crop drops the border the most magnified frame (1.04) does not cover
        assert cw / W == pytest.approx(1 / 1.04, abs=0.01) and ch / cw == pytest.approx(H / W, abs=0.01)
        assert stack.lens.pixel_pitch_m == pytest.approx(1.8e-6 * W / w / 1.04, rel=0.01)
        assert stack.extra["source"]["note"] == "no licence: keep out of the repository"
        assert stack.extra["source"]["files"][0] == "IMAGE_01_06.00000000.jpg"
        assert len(stack.extra["registration"]["magnification"]) == 5
        assert (cfg.out / res.scene.name / "lens.json").is_file()


def test_registration_aligns_frames_with_the_reference(af4d, converted):
    cfg, results = converted
    res = results[0]
    stack = read_stack(cfg.out / res.scene.name)
    ref = stack.images[-1]  # farthest focus: the reference
    for k in range(4):
        naive = af4d.resample_frame(af4d.load_rgb(res.frames[k].path), 1.0, res.crop, res.size)
        before = float(np.abs(naive - ref).mean())
        after = float(np.abs(stack.images[k] - ref).mean())
        assert after < 0.75 * before, (k, before, after)


def test_main_converts_and_prints_the_breathing_report(af4d, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is accepted
    rc = af4d.main([str(scenes[0]), "--out", str(out), "--width", "120", "--dioptres", "1,3.5,6"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "magnification = 1 + " in text and "IMAGE_01_03.50000000.jpg" in text
    stack = read_stack(out / "sceneA")
    assert stack.size[0] == 120 and stack.focus_m == pytest.approx([1 / 6, 1 / 3.5, 1.0])


def test_help(af4d, capsys):
    assert af4d.main(["--help"]) == 0
    assert "--dioptres" in capsys.readouterr().out


def _refused(af4d, capsys, argv, *needles):
    if "--width" not in argv:
        argv = [*argv, "--width", "160"]  # the default 1632 is for the real 3264 px frames
    rc = af4d.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    for n in needles:
        assert n in err, err
    return err


def test_folder_without_sweep_files_is_refused(af4d, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    out = tmp_path / "out"
    _refused(af4d, capsys, [str(empty), "--out", str(out)], str(empty), "IMAGE_")
    assert not out.exists()


def test_unparsable_name_is_refused(af4d, scenes, tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(scenes[0], scene)
    shutil.copy(scene / "IMAGE_01_01.00000000.jpg", scene / "IMAGE_01_near.jpg")
    out = tmp_path / "out"
    _refused(af4d, capsys, [str(scenes[1]), str(scene), "--out", str(out)], "IMAGE_01_near.jpg")
    assert not out.exists()


def test_frames_of_different_sizes_are_refused(af4d, scenes, tmp_path, capsys):
    from PIL import Image

    scene = tmp_path / "scene"
    shutil.copytree(scenes[0], scene)
    p = scene / "IMAGE_01_03.50000000.jpg"
    with Image.open(p) as im:
        im.resize((W // 2, H // 2)).save(p, quality=95)
    out = tmp_path / "out"
    _refused(af4d, capsys, [str(scene), "--out", str(out)], "IMAGE_01_03.50000000.jpg", "200x120")
    assert not out.exists()


def test_non_empty_out_folder_is_refused(af4d, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _refused(af4d, capsys, [str(scenes[0]), "--out", str(out)], str(out), "not an empty folder")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_dioptre_outside_the_sweep_is_refused(af4d, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(af4d, capsys, [str(scenes[0]), "--out", str(out), "--dioptres", "1,6.4"], "6.4", "0.500-6.000")
    assert not out.exists()
    # 0.3 D beyond the last frame is still accepted by select_frames
    assert af4d.select_frames(af4d.parse_scene(scenes[0]), [1.0, 6.25])[-1].dioptres == 6.0


def test_two_requests_picking_one_frame_are_refused(af4d, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(af4d, capsys, [str(scenes[0]), "--out", str(out), "--dioptres", "1.0,1.1,3"], "both pick",
             "IMAGE_01_01.00000000.jpg")
    assert not out.exists()


def test_bad_dioptre_list_is_a_usage_error(af4d, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    assert af4d.main([str(scenes[0]), "--out", str(out), "--dioptres", "1,two"]) == 2
    assert "two" in capsys.readouterr().err
    assert not out.exists()


def test_width_wider_than_the_frames_is_refused(af4d, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(af4d, capsys, [str(scenes[0]), "--out", str(out), "--width", "500"], "--width 500", "400 pixels")
    assert not out.exists()
    # wider than the registered crop (382 px) but not than the frames: refused after registration, nothing left
    _refused(af4d, capsys, [str(scenes[0]), "--out", str(out), "--width", "390", "--quiet"], "--width 390", "382")
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
