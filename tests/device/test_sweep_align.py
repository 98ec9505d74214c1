"""Sweep scheduling (ping-pong order, settle waits, sliding window) and focus-breathing alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_helpers import FOCUS, sim_factory
from device.align import align_frame, align_stack, breathing_ratio, image_distance_m
from device.sweep import SweepConfig, SweepScheduler, check_focus_reachable, ping_pong_order


def test_ping_pong_order_reuses_the_end_position():
    assert ping_pong_order(3, 3) == [0, 1, 2, 2, 1, 0, 0, 1, 2]


def test_stack_mode_alternates_direction_and_yields_sorted_stacks():
    cam = sim_factory()()
    sched = SweepScheduler(cam, list(reversed(FOCUS)), SweepConfig(mode="stack"))
    stacks = list(sched.stacks(max_stacks=3))
    cam.close()
    assert [s.direction for s in stacks] == ["near-to-far", "far-to-near", "near-to-far"]
    for s in stacks:
        assert s.images.shape == (5, 30, 40, 3)
        assert np.allclose(s.focus_m, FOCUS)
        assert s.full_sweep and all(m["settled"] for m in s.frames)
    # timestamps: the capture order follows the sweep direction
    ts = [m["timestamp_ns"] for m in stacks[1].frames]
    assert ts == sorted(ts, reverse=True)
    assert sched.frames_captured == 15
    assert stacks[2].t_first_ns > stacks[0].t_last_ns


def test_sliding_mode_yields_a_stack_per_frame_after_the_first_sweep():
    cam = sim_factory()()
    sched = SweepScheduler(cam, FOCUS, SweepConfig(mode="sliding"))
    stacks = list(sched.stacks(max_stacks=6))
    cam.close()
    assert sched.frames_captured == 5 + 5
    assert [s.full_sweep for s in stacks] == [True, False, False, False, False, True]
    # each new stack replaces exactly one frame (the newest) of the previous one
    for a, b in zip(stacks[:-1], stacks[1:]):
        changed = [i for i in range(5) if a.frames[i]["frame_index"] != b.frames[i]["frame_index"]]
        assert len(changed) == 1


def test_settle_waits_are_what_gets_sharp_frames():
    aif = np.repeat(np.random.default_rng(2).random((30, 40, 1), dtype=np.float32), 3, axis=2)
    scene = (aif, np.full((30, 40), 1.0, np.float32))
    make = sim_factory(scene=scene, slew_dpt_per_s=5.0, settle_time_s=0.05, noise=(0, 0), bits=None)
    results = {}
    for settle in (True, False):
        cam = make()
        s = next(SweepScheduler(cam, [1.0, 6.0], SweepConfig(settle=settle, align=False)).stacks(max_stacks=2))
        cam.close()
        results[settle] = [m["lens_dioptres_actual"] for m in s.frames]
    assert results[True] == pytest.approx([1.0, 1 / 6], abs=1e-3)
    assert abs(results[False][1] - 1 / 6) > 0.05  # without waiting the 6 m frame was taken mid-travel


def test_unreachable_focus_is_a_clear_error():
    cam = sim_factory(control_range=(0.0, 0.5))()
    with pytest.raises(ValueError, match=r"1 m, 1.5 m.*outside this sim camera's focus range 2 m to infinity"):
        check_focus_reachable(cam, FOCUS)
    with pytest.raises(ValueError, match="at least 2"):
        SweepScheduler(cam, [4.0])
    cam.close()


def test_breathing_ratio_matches_the_thin_lens():
    from model.lens import LensProfile

    lens = LensProfile(0.05, 8.0, 1.2e-5)
    assert image_distance_m(math.inf, lens) == 0.05
    assert image_distance_m(1.0, lens) == pytest.approx(0.05 / 0.95)
    assert breathing_ratio(6.0, 1.0, lens) == pytest.approx((0.05 * 6 / 5.95) / (0.05 / 0.95))
    with pytest.raises(ValueError):
        image_distance_m(0.04, lens)


def test_alignment_undoes_the_simulated_breathing():
    rng = np.random.default_rng(3)
    h, w = 64, 80
    aif = rng.random((h, w, 3), dtype=np.float32)
    import cv2

    aif = cv2.GaussianBlur(aif, (0, 0), 1.5)  # smooth enough for bilinear resampling to be exact-ish
    from model.lens import LensProfile

    pinhole = LensProfile(0.05, 2000.0, 1.2e-5, image_size=(w, h))  # no defocus: frames differ by breathing only
    scene = (aif, np.full((h, w), 3.0, np.float32))
    cam = sim_factory(size=(w, h), scene=scene, noise=(0, 0), bits=None, true_lens=pinhole)()
    raw = next(SweepScheduler(cam, FOCUS, SweepConfig(align=False)).stacks(max_stacks=1))
    cam.close()
    inner = (slice(12, -12), slice(12, -12))
    before = np.abs(raw.images[-1] - raw.images[0])[inner].mean()
    aligned = align_stack(raw.images, raw.focus_m, cam.optics)
    after = np.abs(aligned[-1] - aligned[0])[inner].mean()
    assert after < 0.25 * before
    # aligning to itself is the identity
    assert np.array_equal(align_frame(raw.images[0], 1.0, 1.0, cam.optics), raw.images[0])
