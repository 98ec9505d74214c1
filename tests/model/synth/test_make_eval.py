"""The evaluation-set CLI (python -m model.make_eval)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.cli import UsageError
from model.formats import find_stacks, read_stack
from model.make_eval import MakeEvalConfig, main, make_eval_set, motorcycle_rgbd
from model.synth.textures import HELD_OUT_PHOTOS, TRAIN_PHOTOS

ROOT = Path(__file__).resolve().parents[3]


def test_motorcycle_depth():
    rgb, depth = motorcycle_rgbd()
    assert rgb.shape == (500, 741, 3) and depth.shape == (500, 741)
    known = np.isfinite(depth)
    assert 0.8 < known.mean() < 1.0
    assert 1.5 < np.nanmin(depth) and np.nanmax(depth) < 6.0


def test_full_set_tiny(tmp_path):
    out = tmp_path / "eval"
    paths = make_eval_set(MakeEvalConfig(out=out, size=(64, 48)), progress=False)
    assert 20 <= len(paths) <= 40
    assert sorted(find_stacks(out)) == sorted(paths)
    index = json.loads((out / "eval_set.json").read_text())
    assert len(index["stacks"]) == len(paths) and index["focus_m"] == [1.0, 1.5, 2.5, 4.0, 6.0]
    near, far = index["working_range_m"]
    names = [r["stack"] for r in index["stacks"]]
    assert any(n.startswith("motorcycle_") for n in names) and any(n.startswith("photo_") for n in names)
    for r in index["stacks"]:  # only held-out content
        if r["stack"].startswith("photo_"):
            assert r["source"].split(".")[-1] in HELD_OUT_PHOTOS
        assert not any(r["source"].endswith("." + t) for t in TRAIN_PHOTOS)
    for p in paths[::5]:
        st = read_stack(p)
        assert st.images.shape == (5, 48, 64, 3)
        assert np.allclose(st.focus_m, [1.0, 1.5, 2.5, 4.0, 6.0])
        assert st.lens.pixel_pitch_m == pytest.approx(1.2e-5 * 5)  # 320x240 -> 64x48
        assert st.depth is not None and st.aif is not None
        known = np.isfinite(st.depth)
        assert known.mean() > 0.5
        assert near <= st.depth[known].min() and st.depth[known].max() <= far


def test_deterministic_and_refuses_existing_out(tmp_path):
    a = make_eval_set(MakeEvalConfig(out=tmp_path / "a", size=(32, 24), limit=2, seed=3), progress=False)
    b = make_eval_set(MakeEvalConfig(out=tmp_path / "b", size=(32, 24), limit=2, seed=3), progress=False)
    for pa, pb in zip(a, b):
        assert np.array_equal(read_stack(pa).images, read_stack(pb).images)
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_eval_set(MakeEvalConfig(out=tmp_path / "a", size=(32, 24), limit=1), progress=False)
    make_eval_set(MakeEvalConfig(out=tmp_path / "a", size=(32, 24), limit=1, overwrite=True), progress=False)
    assert len(find_stacks(tmp_path / "a")) == 1
    (tmp_path / "empty").mkdir()
    assert len(make_eval_set(MakeEvalConfig(out=tmp_path / "empty", size=(32, 24), limit=1), progress=False)) == 1


def test_tuning_set_uses_training_content_only(tmp_path):
    from model.synth.textures import HELD_OUT_PHOTOS, TRAIN_PHOTOS, available_photos

    paths = make_eval_set(MakeEvalConfig(out=tmp_path / "t", size=(32, 24), tuning=3, tuning_photos=1), progress=False)
    index = json.loads((tmp_path / "t" / "eval_set.json").read_text())
    first = available_photos("train")[0]
    layouts = ["plane", "slant", "fold", "cards"]
    assert [r["stack"] for r in index["stacks"]] == (["tune_00", "tune_01", "tune_02"]
                                                     + [f"tune_photo_{first}_{k}" for k in layouts])
    assert len(paths) == 7
    assert all("split='train'" in r["source"] for r in index["stacks"][:3])
    photos = {r["source"].removeprefix("skimage.data.") for r in index["stacks"][3:]}
    assert photos == {first} and first in TRAIN_PHOTOS and first not in HELD_OUT_PHOTOS
    st = read_stack(paths[0])
    assert st.images.shape == (5, 24, 32, 3) and st.depth is not None and np.isfinite(st.depth).all()
    cards = read_stack(paths[-1])
    assert np.isfinite(cards.depth).all() and len(np.unique(np.round(cards.depth, 2))) > 3


def test_tuning_set_without_photos_and_procedural_stacks_do_not_change(tmp_path):
    a = make_eval_set(MakeEvalConfig(out=tmp_path / "a", size=(32, 24), tuning=2, tuning_photos=0), progress=False)
    b = make_eval_set(MakeEvalConfig(out=tmp_path / "b", size=(32, 24), tuning=2, tuning_photos=2), progress=False)
    assert [p.name for p in a] == ["tune_00", "tune_01"] and len(b) == 2 + 2 * 4
    np.testing.assert_array_equal(read_stack(a[1]).images, read_stack(b[1]).images)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(focus_m=(1.0,)), "at least 2"),
        (dict(focus_m=(1.0, -2.0)), "positive"),
        (dict(focus_m=(1.0, 1.0)), "distinct"),
        (dict(focus_m=(0.01, 1.0)), "focal length"),
        (dict(size=(50, 50)), "aspect"),
        (dict(limit=0), "limit"),
        (dict(tuning=0), "tuning"),
        (dict(tuning=1, tuning_photos=-1), "tuning-photos"),
    ],
)
def test_bad_config(tmp_path, kw, match):
    with pytest.raises(UsageError, match=match):
        make_eval_set(MakeEvalConfig(out=tmp_path / "x", **{"size": (32, 24), **kw}), progress=False)
    assert not (tmp_path / "x").exists()


def test_bad_lens_file(tmp_path):
    bad = tmp_path / "lens.json"
    bad.write_text('{"format": "lens/1", "focal_length_m": -1, "f_number": 2, "pixel_pitch_m": 1e-6}')
    from model.errors import FormatError

    with pytest.raises(FormatError, match="focal_length_m"):
        make_eval_set(MakeEvalConfig(out=tmp_path / "x", lens=bad), progress=False)


def test_main_in_process(tmp_path):
    assert main(["--out", str(tmp_path / "o"), "--size", "32x24", "--limit", "1", "--focus", "1", "3"]) == 0
    st = read_stack(find_stacks(tmp_path / "o")[0])
    assert np.allclose(st.focus_m, [1.0, 3.0])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "model.make_eval", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # a hang guard, not a speed limit


def test_cli_errors_exit_2_without_traceback(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = _cli("--out", str(tmp_path / "full"), "--size", "32x24", "--limit", "1")
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr
    r = _cli("--out", str(tmp_path / "o"), "--focus", "abc")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = _cli("--out", str(tmp_path / "o"), "--lens", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "missing.json" in r.stderr and "Traceback" not in r.stderr
    r = _cli("--out", str(tmp_path / "o"), "--size", "32x24", "--focus", "1", "-3")
    assert r.returncode == 2 and "focus" in r.stderr


def test_help_is_the_docstring_and_does_not_import_torch():
    code = ("import sys, runpy; sys.argv=['x','--help']\n"
            "try:\n runpy.run_module('model.make_eval', run_name='__main__')\nexcept SystemExit: pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)  # a hang guard, not a speed limit
    assert "Middlebury" in r.stdout and "NOTORCH" in r.stdout
