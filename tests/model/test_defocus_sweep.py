"""The relative-blur sweep: on a stack rendered by an independent path (OpenCV Gaussian blurs of planes at
known depths), a prior that is off by 25 % is pulled to the true depth; the PyTorch module equals a plain
NumPy/OpenCV sweep written here, does not depend on its chunking or batching, and runs the same in
onnxruntime; the runner wrapper recomputes the physics check; bad input is a clear error."""

import io
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from model.defocus_sweep import (SweepConfig, SweepingRunner, SweepLayer, graph_sweeps, lens_tensor,
                                 cost_support, relative_blur_cost, relative_blur_cost_of, sweep_depth)
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


def test_cost_of_depth_maps_interpolates_the_sampled_cost_and_prefers_the_true_map():
    stack, _, depth = _two_planes()
    cfg = SweepConfig(window=9)
    wrong = np.where(np.arange(depth.shape[1]) < depth.shape[1] // 2, 3.2, 1.3)[None].repeat(depth.shape[0], 0)
    maps = np.stack([depth, wrong.astype(np.float32), np.full_like(depth, 2.0)])
    cost = relative_blur_cost_of(stack, FOCUS, LENS, maps, (0.5, 12.0), config=cfg)
    assert cost.shape == (3,) + depth.shape and cost.dtype == np.float32
    inner = np.zeros(depth.shape, bool)
    inner[8:-8, 8:22] = inner[8:-8, 42:56] = True
    assert np.mean(cost[0][inner] < cost[1][inner]) > 0.9  # the true map is cheaper than the swapped one
    # a constant map on a hypothesis of the log grid gives exactly that hypothesis's cost
    grid = np.exp(np.linspace(math.log(0.5), math.log(12.0), 96))
    on_grid = np.full_like(depth, grid[40], dtype=np.float32)
    direct = relative_blur_cost(stack, FOCUS, LENS, np.array([grid[40]], np.float32), cfg)[0]
    assert np.allclose(relative_blur_cost_of(stack, FOCUS, LENS, on_grid[None], (0.5, 12.0), config=cfg)[0], direct,
                       rtol=1e-4, atol=1e-7)
    # between two grid depths: between their costs
    mid = np.full_like(depth, math.sqrt(grid[40] * grid[41]), dtype=np.float32)
    pair = relative_blur_cost(stack, FOCUS, LENS, np.array([grid[40], grid[41]], np.float32), cfg)
    got = relative_blur_cost_of(stack, FOCUS, LENS, mid[None], (0.5, 12.0), config=cfg)[0]
    assert np.all(got >= pair.min(0) - 1e-6) and np.all(got <= pair.max(0) + 1e-6)
    with pytest.raises(ValueError, match="depth_maps_m must be"):
        relative_blur_cost_of(stack, FOCUS, LENS, depth, (0.5, 12.0))
    with pytest.raises(ValueError, match="finite and positive"):
        relative_blur_cost_of(stack, FOCUS, LENS, -maps, (0.5, 12.0))
    with pytest.raises(ValueError, match="working_range_m"):
        relative_blur_cost_of(stack, FOCUS, LENS, maps, (2.0, 1.0))


def test_cost_support_is_high_at_the_true_depth_on_texture_and_zero_on_a_flat_region():
    stack, _, depth = _two_planes(w=192)
    stack = stack.copy()
    stack[:, :, 96:] = 0.5  # the far plane's half is textureless in every frame
    cfg = SweepConfig(window=9)
    agree, distinct = cost_support(stack, FOCUS, LENS, depth, (0.5, 12.0), config=cfg)
    assert agree.shape == distinct.shape == depth.shape and agree.dtype == distinct.dtype == np.float32
    assert 0 <= agree.min() and agree.max() <= 1 and 0 <= distinct.min() and distinct.max() <= 1
    # beyond the widest relative blur's reach (60 px) from the seam, the flat half is flat at every depth
    textured, flat = (slice(8, -8), slice(6, 40)), (slice(8, -8), slice(160, 186))
    assert np.median(agree[textured]) > 0.9 and np.median(distinct[textured]) > 0.3
    assert np.all(agree[flat] == 0) and np.all(distinct[flat] == 0)  # no evidence: no support
    wrong_agree, wrong_distinct = cost_support(stack, FOCUS, LENS, np.full_like(depth, 3.2), (0.5, 12.0), config=cfg)
    assert np.median(wrong_agree[textured]) < 0.5  # the stack does not support 3.2 m on the 1.3 m plane
    assert np.array_equal(wrong_distinct, distinct)  # distinctness is the cost's, not the depth's
    with pytest.raises(ValueError, match="depth_m must be"):
        cost_support(stack, FOCUS, LENS, depth[None], (0.5, 12.0))
    with pytest.raises(ValueError, match="finite and positive"):
        cost_support(stack, FOCUS, LENS, -depth, (0.5, 12.0))
    with pytest.raises(ValueError, match="working_range_m"):
        cost_support(stack, FOCUS, LENS, depth, (2.0, 1.0))


def test_bad_input_is_a_clear_error():
    stack, _, depth = _two_planes()
    with pytest.raises(ValueError, match="window"):
        SweepConfig(window=4)
    with pytest.raises(ValueError, match="band"):
        SweepConfig(band=1.0)
    with pytest.raises(ValueError, match="min_gain"):
        SweepConfig(min_gain=1.0)
    with pytest.raises(ValueError, match="focus distances"):
        relative_blur_cost(stack, FOCUS[:3], LENS, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="prior_depth_m"):
        sweep_depth(stack, FOCUS, LENS, depth[:10], (0.5, 12.0))
    with pytest.raises(ValueError, match="working_range_m"):
        sweep_depth(stack, FOCUS, LENS, depth, (2.0, 1.0))


# ------------------------------------------------------------------------------------------------------
# The module against a reference written here (loops over hypotheses and frame pairs, OpenCV blurs)

SMALL = SweepConfig(window=9, max_sigma_px=8.0, pyramid_levels=24, hypotheses=24)  # kernels fit 48 px


def _reference_cost(stack, focus, lens, depths, cfg):
    """The sweep's cost volume the plain way: per hypothesis and ordered frame pair with sigma_i > sigma_j,
    frame j's grey image blurred by the two pyramid levels around the relative blur (OpenCV, reflect-101
    borders, 2 round(4 sigma) + 1 taps), linearly mixed, minus frame i's; squared, summed, box-averaged."""
    import cv2

    grey = stack @ np.array([0.299, 0.587, 0.114], np.float32)
    levels = np.concatenate([[0.0], np.geomspace(0.3, cfg.max_sigma_px, cfg.pyramid_levels)])

    def blur(g, s):
        if s == 0:
            return g
        k = 2 * int(round(4 * s)) + 1
        return cv2.GaussianBlur(g, (k, k), s, borderType=cv2.BORDER_REFLECT_101)

    pyr = [[blur(g, s) for s in levels] for g in grey]
    out = []
    for d in depths:
        sig = [float(coc_sigma_px(float(d), float(f), lens)) for f in focus]
        c = np.zeros(grey.shape[1:], np.float64)
        for i in range(len(focus)):
            for j in range(len(focus)):
                if sig[i] > sig[j]:
                    r = math.sqrt(sig[i] ** 2 - sig[j] ** 2)
                    k = int(np.clip(np.searchsorted(levels, r), 1, len(levels) - 1))
                    a = float(np.clip((r - levels[k - 1]) / (levels[k] - levels[k - 1]), 0, 1))
                    c += ((1 - a) * pyr[j][k - 1] + a * pyr[j][k] - grey[i]) ** 2
        out.append(cv2.boxFilter(c.astype(np.float32), -1, (cfg.window, cfg.window), borderType=cv2.BORDER_REFLECT_101))
    return np.stack(out)


def test_cost_volume_equals_a_plain_numpy_sweep():
    from model.defocus_sweep import _pyramid_plan

    assert sum(src > 0 for src, _ in _pyramid_plan(SMALL.levels())) >= 5  # cascaded levels are among those checked
    stack, _, _ = _two_planes()
    hyps = np.geomspace(0.6, 10.0, 9)
    got = relative_blur_cost(stack, FOCUS, LENS, hyps, SMALL)
    ref = _reference_cost(stack, FOCUS, LENS, hyps, SMALL)
    assert got.shape == ref.shape == (9, 48, 64)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("min_gain", [0.0, 0.1])
def test_swept_depth_equals_the_reference_banded_argmin(min_gain):
    """The cheapest hypothesis in the band (the one nearest the prior included); with min_gain, the prior
    itself where that is not cheaper than the nearest hypothesis by min_gain of its cost."""
    cfg = replace(SMALL, min_gain=min_gain)
    stack, _, depth = _two_planes()
    near, far = 0.5, 12.0
    prior = (depth * np.where(np.arange(64) < 32, 1.2, 0.85)[None]).astype(np.float32)
    inv = np.geomspace(1 / far, 1 / near, SMALL.hypotheses)
    cost = _reference_cost(stack, FOCUS, LENS, 1 / inv, SMALL)
    dist = np.abs(np.log(inv)[:, None, None] - np.log(1 / prior)[None])
    inside = dist <= np.log(SMALL.band)
    yy, xx = np.indices(prior.shape)
    nearest = dist.argmin(0)
    inside[nearest, yy, xx] = True
    masked = np.where(inside, cost, np.inf)
    ref = (1 / inv)[masked.argmin(0)]
    if min_gain:
        keep = masked.min(0) > cost[nearest, yy, xx] * (1 - min_gain)
        assert 0.01 < keep.mean() < 0.99  # the gate keeps the prior at some pixels, not all
        ref = np.where(keep, np.clip(prior, near, far), ref)
    got = sweep_depth(stack, FOCUS, LENS, prior, (near, far), cfg)
    same = np.isclose(got, ref, rtol=1e-5)
    assert same.mean() > 0.99  # the rest: near-ties between neighbouring hypotheses (or at the gate)
    step = np.log(far / near) / (SMALL.hypotheses - 1)
    assert np.all(np.abs(np.log(got / ref)) <= step * 1.01)
    # and it recovers the planes better than the prior it was given
    assert np.median(np.abs(np.log(got / depth))) < 0.5 * np.median(np.abs(np.log(prior / depth)))  # 24 hypotheses: coarse


def test_result_does_not_depend_on_chunking_or_batching():
    stack, _, depth = _two_planes()
    x = torch.from_numpy(stack).permute(0, 3, 1, 2)[None]
    f = torch.tensor([FOCUS])
    prior = torch.from_numpy(depth * 1.2)[None, None]
    rng = torch.tensor([[0.5, 12.0]])
    with torch.inference_mode():
        outs = [SweepLayer(SMALL, chunk=c)(x, f, lens_tensor(LENS), prior, rng) for c in (None, 5, 24)]
        for o in outs[1:]:
            assert torch.equal(o, outs[0])
        # a batch of two stacks with different lenses and focus distances equals each alone
        lens2 = LensProfile(0.035, 2.8, 6e-6)
        f2 = torch.tensor([[0.8, 1.2, 2.0, 3.0, 5.0]])
        one = SweepLayer(SMALL)(x, f2, lens_tensor(lens2), prior, torch.tensor([[0.4, 10.0]]))
        both = SweepLayer(SMALL)(torch.cat([x, x]), torch.cat([f, f2]),
                                 torch.cat([lens_tensor(LENS), lens_tensor(lens2)]), torch.cat([prior, prior]),
                                 torch.tensor([[0.5, 12.0], [0.4, 10.0]]))
    assert torch.equal(both[:1], outs[0]) and torch.equal(both[1:], one)
    assert not torch.equal(one, outs[0])


def test_in_graph_blur_is_the_thin_lens_of_model_optics():
    layer = SweepLayer(SMALL)
    d = torch.tensor([[0.7, 2.0, 9.0]])
    sig = layer._sigma(d, torch.tensor([FOCUS]), type(layer)._sigma.__globals__["_ThinLensTensors"](lens_tensor(LENS)))
    want = [[[float(coc_sigma_px(float(x), f, LENS)) for f in FOCUS] for x in d[0]]]
    np.testing.assert_allclose(sig.numpy(), want, rtol=1e-5)


def test_small_images_are_padded_in_rounds():
    """Kernels wider than the image (default config: 24 px radius on a 16 x 20 stack) still give finite depth
    inside the working range."""
    assert SweepConfig().max_pad_px() == 24
    stack, _, depth = _two_planes(h=16, w=20)
    out = sweep_depth(stack, FOCUS, LENS, depth, (0.5, 12.0))
    assert out.shape == depth.shape and np.isfinite(out).all()
    assert out.min() >= 0.5 - 1e-5 and out.max() <= 12.0 + 1e-4


def test_onnxruntime_runs_the_traced_module_as_pytorch_does():
    ort = pytest.importorskip("onnxruntime")
    stack, _, depth = _two_planes()
    args = (torch.from_numpy(stack).permute(0, 3, 1, 2)[None], torch.tensor([FOCUS]), lens_tensor(LENS),
            torch.from_numpy(depth * 0.8)[None, None], torch.tensor([[0.5, 12.0]]))
    layer = SweepLayer(SMALL, chunk=None).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, args, buf, dynamo=False, opset_version=17,
                          input_names=["images", "focus_m", "lens", "prior", "range"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in zip(["images", "focus_m", "lens", "prior", "range"], args)})[0]
    with torch.inference_mode():
        want = SweepLayer(SMALL)(*args).numpy()  # eager, chunked, in place
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_module_input_errors():
    layer = SweepLayer(SMALL)
    x = torch.rand(1, 5, 3, 16, 16)
    f = torch.tensor([FOCUS])
    lt = lens_tensor(LENS)
    prior = torch.full((1, 1, 16, 16), 2.0)
    rng = torch.tensor([[0.5, 12.0]])
    with pytest.raises(ValueError, match="images must be"):
        layer(x[:, :1], f[:, :1], lt, prior, rng)
    with pytest.raises(ValueError, match="focus_m must be"):
        layer(x, f[:, :3], lt, prior, rng)
    with pytest.raises(ValueError, match="lens must be"):
        layer(x, f, lt[:, :2], prior, rng)
    with pytest.raises(ValueError, match="prior_depth_m must be"):
        layer(x, f, lt, prior[..., :8], rng)
    with pytest.raises(ValueError, match="working_range_m must be"):
        layer(x, f, lt, prior, rng[:, :1])
    with pytest.raises(ValueError, match="chunk"):
        SweepLayer(SMALL, chunk=0)
    with pytest.raises(ValueError, match="at least 2 pixels"):
        layer(torch.rand(1, 5, 3, 1, 16), f, lt, torch.ones(1, 1, 1, 16), rng)


def test_a_graph_that_already_sweeps_is_not_swept_twice():
    class _Info:
        sweep = {"config": {}}

    inner = _FakeRunner()
    assert not graph_sweeps(inner)
    inner.info = _Info()
    assert graph_sweeps(inner)
    with pytest.raises(ValueError, match="already swept"):
        SweepingRunner(inner)
