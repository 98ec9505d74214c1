"""The relative-blur sweep: on a stack rendered by an independent path (OpenCV Gaussian blurs of planes at
known depths), a prior that is off by 25 % is pulled to the true depth; the runner wrapper recomputes the
physics check; bad input is a clear error; the CLIs take --sweep."""

import numpy as np
import pytest

from model.defocus_sweep import SweepConfig, SweepingRunner, relative_blur_cost, sweep_depth
from model.lens import LensProfile
from model.optics import coc_sigma_px
from model.runners import Prediction

FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]
LENS = LensProfile(0.05, 8.0, 12e-6)


def _two_planes(h=48, w=64, seed=0):
    """Texture on two fronto-parallel planes (left 1.3 m, right 3.2 m), each frame blurred per plane with
    cv2 (not the package's renderer) by the thin-lens Gaussian sigma."""
    import cv2

    rng = np.random.default_rng(seed)
    aif = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 0.7)
    depth = np.full((h, w), 1.3, np.float32)
    depth[:, w // 2:] = 3.2
    frames = []
    for f in FOCUS:
        frame = np.empty_like(aif)
        for d, cols in ((1.3, slice(0, w // 2)), (3.2, slice(w // 2, w))):
            s = float(coc_sigma_px(d, f, LENS))
            frame[:, cols] = (cv2.GaussianBlur(aif, (0, 0), s, borderType=cv2.BORDER_REFLECT) if s > 0.05 else aif)[:, cols]
        frames.append(frame)
    return np.stack(frames), aif, depth


def test_true_depth_is_the_cheapest_hypothesis_away_from_the_seam():
    stack, _, depth = _two_planes()
    hyps = np.array([1.0, 1.3, 1.7, 2.5, 3.2, 4.5])
    cost = relative_blur_cost(stack, FOCUS, LENS, hyps, SweepConfig(window=9))
    best = hyps[cost.argmin(0)]
    inner = (slice(8, -8), slice(8, 22)), (slice(8, -8), slice(42, 56))
    for sl, d in zip(inner, (1.3, 3.2)):
        assert np.mean(best[sl] == d) > 0.9


def test_sweep_pulls_a_wrong_prior_to_the_true_depth():
    stack, _, depth = _two_planes()
    prior = depth * np.where(np.arange(depth.shape[1]) < depth.shape[1] // 2, 1.25, 0.8)[None].astype(np.float32)
    out = sweep_depth(stack, FOCUS, LENS, prior, (0.5, 12.0), SweepConfig(window=9))
    err_prior = np.median(np.abs(np.log(prior / depth)))
    err_out = np.median(np.abs(np.log(out / depth)))
    assert err_out < 0.3 * err_prior
    # never outside the band around the prior (nor outside the working range)
    assert np.all(np.abs(np.log(out / prior)) <= np.log(1.35) + np.log(12.0 / 0.5) / 63 + 1e-6)
    assert out.min() >= 0.5 - 1e-6 and out.max() <= 12.0 + 1e-5


class _FakeRunner:
    name = "fake"

    def __init__(self):
        self.lens = LENS
        self.focus_m = list(FOCUS)
        self.working_range_m = (0.5, 12.0)

    def predict(self, images, focus_m):
        s, h, w, _ = images.shape
        return Prediction(depth_m=np.full((h, w), 2.0, np.float32), aif=images[2].copy(),
                          confidence=np.zeros((h, w), np.float32))


def test_sweeping_runner_wraps_any_runtime_and_rechecks():
    stack, _, depth = _two_planes()
    runner = SweepingRunner(_FakeRunner(), SweepConfig(window=9, band=2.0))
    assert runner.name == "fake+sweep"
    pred = runner.predict(stack, FOCUS)
    assert pred.depth_m.shape == depth.shape and pred.rendered.shape == stack.shape
    assert np.median(np.abs(np.log(pred.depth_m / depth))) < 0.5 * np.median(np.abs(np.log(2.0 / depth)))
    assert pred.confidence.shape == depth.shape and pred.confidence.max() > 0  # recomputed for the new depth


def test_bad_input_is_a_clear_error():
    stack, _, depth = _two_planes()
    with pytest.raises(ValueError, match="window"):
        SweepConfig(window=4)
    with pytest.raises(ValueError, match="band"):
        SweepConfig(band=1.0)
    with pytest.raises(ValueError, match="focus distances"):
        relative_blur_cost(stack, FOCUS[:3], LENS, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="prior_depth_m"):
        sweep_depth(stack, FOCUS, LENS, depth[:10], (0.5, 12.0))
    with pytest.raises(ValueError, match="working_range_m"):
        sweep_depth(stack, FOCUS, LENS, depth, (2.0, 1.0))
