"""Test-time refinement: it lowers the self-supervised loss and the depth error; propagation fills
textureless regions along colour edges; bad input gives clear errors."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.refine import (
    DISC_MATCHED_SIGMA_SCALE,
    RefineConfig,
    RefiningRunner,
    aif_texture,
    disc_matched_sigma_scale,
    focus_texture,
    propagate_depth,
    refine_prediction,
    weighted_median_depth,
)
from model.runners import Prediction

FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]


def _rendered_stack(lens, h=48, w=48, seed=0):
    """A physically rendered stack: random texture, two depth planes (1.2 m left, 3.0 m right)."""
    from model.optics import defocus_sigma_map
    from model.render import render_stack

    rng = np.random.default_rng(seed)
    aif = rng.random((h, w, 3)).astype(np.float32)
    aif = (aif + np.roll(aif, 1, 0) + np.roll(aif, 1, 1)) / 3  # some spatial correlation
    depth = np.full((h, w), 1.2, np.float32)
    depth[:, w // 2:] = 3.0
    with torch.no_grad():
        a = torch.from_numpy(aif).permute(2, 0, 1)[None]
        sigma = defocus_sigma_map(torch.from_numpy(depth)[None, None], torch.tensor([FOCUS]), lens)
        stack = render_stack(a, sigma, radius=12)[0].permute(0, 2, 3, 1).numpy()
    return stack.astype(np.float32), aif, depth


def _recon(lens, stack, depth, aif):
    from model.losses import recon_loss
    from model.optics import defocus_sigma_map
    from model.render import render_stack

    with torch.no_grad():
        sigma = defocus_sigma_map(torch.from_numpy(depth)[None, None], torch.tensor([FOCUS]), lens)
        r = render_stack(torch.from_numpy(aif).permute(2, 0, 1)[None], sigma, radius=12)
        return float(recon_loss(r, torch.from_numpy(stack).permute(0, 3, 1, 2)[None]))


def test_refine_lowers_loss_and_depth_error(lens):
    stack, aif_true, depth_true = _rendered_stack(lens)
    d0 = np.full_like(depth_true, 2.0)  # a poor initial guess
    a0 = stack[0]  # the nearest-focus frame as AIF guess
    # the stack is rendered with the training (moment-matched) Gaussian: fit with that blur model
    cfg = RefineConfig(scales=(0.5, 1.0), iterations=(40, 20), max_radius_px=12, psf_sigma_scale=1.0)
    d, a = refine_prediction(stack, FOCUS, lens, d0, a0, 0.5, 12.0, cfg)
    assert d.shape == depth_true.shape and a.shape == aif_true.shape and d.dtype == np.float32
    assert np.all((d >= 0.5) & (d <= 12.0)) and np.all((a >= 0) & (a <= 1))
    assert _recon(lens, stack, d, a) < 0.7 * _recon(lens, stack, d0, a0)
    err0 = np.median(np.abs(np.log(d0 / depth_true)))
    err1 = np.median(np.abs(np.log(d / depth_true)))
    assert err1 < 0.5 * err0


@pytest.mark.parametrize("diameter_px", [6.0, 12.0])
def test_default_blur_scale_is_the_gaussian_that_best_matches_a_disc(diameter_px):
    from model.synth.textures import random_texture

    rng = np.random.default_rng(3)
    fits = [disc_matched_sigma_scale(random_texture(rng, 96, 96, "train"), diameter_px) for _ in range(5)]
    assert abs(float(np.median(fits)) - DISC_MATCHED_SIGMA_SCALE) <= 0.05, fits  # 1.0 (moment-matched) is not
    assert RefineConfig().psf_sigma_scale == DISC_MATCHED_SIGMA_SCALE


@pytest.mark.parametrize("depth_m, sign", [(0.8, -1.0), (5.0, 1.0)])
def test_disc_matched_blur_removes_the_depth_bias_on_a_disc_rendered_stack(lens, depth_m, sign):
    # a textured plane rendered with the thin lens's uniform disc (the evaluation renderer): refined with
    # the moment-matched Gaussian it comes out too near in front of the focus distances and too far
    # behind most of them (that Gaussian blurs less than the disc, the fit asks for more blur); with the
    # disc-matched scale the bias is much smaller (measured: 0.8 m -5.8 % -> -2.6 %, 5 m +7.2 % -> +2.5 %)
    from model.synth.layered import render_stack_layered
    from model.synth.textures import random_texture

    rng = np.random.default_rng(5)
    aif = random_texture(rng, 64, 64, "train").astype(np.float32)
    depth_true = np.full((64, 64), depth_m, np.float32)
    stack = render_stack_layered(aif, depth_true, FOCUS, lens).astype(np.float32)
    bias = {}
    for k in (1.0, DISC_MATCHED_SIGMA_SCALE):
        cfg = RefineConfig(scales=(0.5, 1.0), iterations=(60, 20), max_radius_px=16, psf_sigma_scale=k)
        d, _ = refine_prediction(stack, FOCUS, lens, np.full_like(depth_true, 1.5), aif, 0.5, 12.0, cfg)
        bias[k] = float(np.median(np.log(d[12:-12, 12:-12] / depth_m)))
    assert sign * bias[1.0] > 0.04, bias  # the known bias of the moment-matched model
    assert abs(bias[DISC_MATCHED_SIGMA_SCALE]) < 0.6 * abs(bias[1.0]), bias


def test_refine_zero_iterations_is_identity(lens):
    stack, _, depth_true = _rendered_stack(lens, 32, 32)
    d, a = refine_prediction(stack, FOCUS, lens, depth_true, stack[2], 0.5, 12.0,
                             RefineConfig(scales=(1.0,), iterations=(0,)))
    np.testing.assert_allclose(d, depth_true, rtol=1e-5)
    np.testing.assert_allclose(a, stack[2], atol=1e-6)


def test_propagate_fills_textureless_along_edges():
    h, w = 30, 40
    aif = np.zeros((h, w, 3))
    aif[:, w // 2:] = 1.0  # a strong colour edge in the middle
    depth = np.full((h, w), 5.0)
    conf = np.zeros((h, w))
    depth[:, :3], conf[:, :3] = 1.0, 1.0  # confident strip on the left (1 m)
    depth[:, -3:], conf[:, -3:] = 4.0, 1.0  # confident strip on the right (4 m)
    out = propagate_depth(depth, aif, conf, strength=1000.0)
    assert out.shape == (h, w) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, : w // 2 - 1], 1.0, rtol=0.02)  # left half from the left strip
    np.testing.assert_allclose(out[:, w // 2 + 1:], 4.0, rtol=0.02)  # right half from the right strip


def test_propagate_interpolates_log_depth_or_inverse_depth():
    # two confident ends (1 m and 4 m), nothing in between, no colour edge: the middle is their
    # geometric mean in log space (2 m) and their harmonic mean in inverse depth (1.6 m)
    h, w = 5, 41
    depth = np.full((h, w), 3.0)
    conf = np.zeros((h, w))
    depth[:, 0], conf[:, 0] = 1.0, 1.0
    depth[:, -1], conf[:, -1] = 4.0, 1.0
    aif = np.full((h, w, 3), 0.5)
    mid = w // 2
    log_mid = propagate_depth(depth, aif, conf, strength=1000.0)[:, mid]
    inv_mid = propagate_depth(depth, aif, conf, strength=1000.0, space="inverse")[:, mid]
    np.testing.assert_allclose(log_mid, 2.0, rtol=0.02)
    np.testing.assert_allclose(inv_mid, 1.6, rtol=0.02)
    with pytest.raises(ValueError, match="space"):
        propagate_depth(depth, aif, conf, space="linear")
    with pytest.raises(ValueError, match="propagate_space"):
        RefineConfig(propagate_space="linear").validate()


def test_propagate_keeps_confident_pixels():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 5, (20, 20))
    out = propagate_depth(depth, rng.random((20, 20, 3)), np.ones((20, 20)), strength=0.0)
    np.testing.assert_allclose(out, depth, rtol=1e-4)


def test_aif_texture_is_zero_on_flat_colour_and_grows_with_contrast():
    rng = np.random.default_rng(3)
    flat = np.full((16, 20, 3), 0.4, np.float32)
    np.testing.assert_allclose(aif_texture(flat), 0.0, atol=1e-6)
    noise = rng.random((16, 20, 3)) - 0.5
    weak, strong = 0.4 + 0.1 * noise, 0.4 + 0.4 * noise
    t_weak, t_strong = aif_texture(weak.astype(np.float32)), aif_texture(strong.astype(np.float32))
    assert t_weak.shape == (16, 20) and t_weak.dtype == np.float32
    np.testing.assert_allclose(t_strong / t_weak, 4.0, rtol=1e-3)  # a std: linear in contrast
    # a colour edge gives texture only within the window's reach
    edge = np.zeros((8, 20, 3), np.float32)
    edge[:, 10:] = 1.0
    t = aif_texture(edge, window=5)
    assert np.all(t[:, 8:12] > 0.3) and np.all(t[:, :7] == 0) and np.all(t[:, 13:] == 0)
    with pytest.raises(ValueError, match="odd"):
        aif_texture(flat, window=4)
    with pytest.raises(ValueError, match="finite"):
        aif_texture(flat[..., :2])
    with pytest.raises(ValueError, match="propagate_texture_window"):
        RefineConfig(propagate_texture_window=6).validate()
    with pytest.raises(ValueError, match="propagate_texture_tau"):
        RefineConfig(propagate_texture_tau=-1.0).validate()


def test_propagation_trusts_only_pixels_with_their_own_texture(lens, monkeypatch):
    """A textured card in front of a flat background. The fit gives the card's depth, with full physics
    confidence, to a band of flat background beside the card (there the card's blur changes the stack).
    The propagation must not trust that halo band: only pixels whose own AIF neighbourhood has texture
    keep their confidence."""
    import model.refine as refine_mod
    from types import SimpleNamespace

    h, w = 24, 48
    rng = np.random.default_rng(0)
    aif = np.full((h, w, 3), 0.5, np.float32)
    aif[:, :16] = rng.random((h, 16, 3))  # the card
    aif[:, 40:] = 0.5 + 0.1 * (rng.random((h, 8, 3)) - 0.5)  # faint texture on the background
    depth = np.full((h, w), 3.0, np.float32)
    conf = np.full((h, w), 0.9, np.float32)  # the physics check trusts everything here, halo included
    depth[:, :24] = 1.0  # card + 8 px halo band: the card's depth
    depth[:, 40:] = 5.0
    stack = np.repeat(aif[None], len(FOCUS), 0)
    seen = {}

    def fake_propagate(d, a, trust, *args, **kwargs):
        seen["trust"] = np.array(trust)
        return np.array(d, np.float32)

    monkeypatch.setattr(refine_mod, "refine_prediction", lambda *a, **k: (depth.copy(), aif.copy()))
    monkeypatch.setattr(refine_mod, "propagate_depth", fake_propagate)
    monkeypatch.setattr(RefiningRunner, "_check", lambda self, *a: SimpleNamespace(
        confidence=conf.copy(), residual=np.zeros((h, w), np.float32), rendered=stack.copy()))

    def trust(tau):  # the texture term alone (identical frames give the relative-blur cost nothing to agree with)
        cfg = RefineConfig(propagate_texture_tau=tau, median_radius=0, propagate_cost_agreement=False)
        RefiningRunner(_FakeRunner(lens), cfg).refine(stack, FOCUS, Prediction(depth_m=depth, aif=aif))
        return seen["trust"]

    t = trust(0.02)
    assert np.all(t[:, :15] > 0.8)  # the card: its own texture, the check's confidence kept
    assert np.all(t[:, 19:37] < 1e-6)  # flat background beyond the window's reach: halo band untrusted
    assert np.median(t[:, 41:]) > 0.5  # faint background texture (std ~0.05) still counts
    np.testing.assert_allclose(trust(0.0), conf)  # tau 0: the physics check alone, as before


def test_focus_texture_reads_the_frame_in_focus_at_each_pixels_depth():
    rng = np.random.default_rng(1)
    h, w = 12, 20
    stack = np.full((len(FOCUS), h, w, 3), 0.5, np.float32)
    stack[0] = rng.random((h, w, 3))  # only the frame focused at 1.0 m has texture
    depth = np.full((h, w), 1.1, np.float32)  # nearest in dioptres: 1.0 m
    depth[:, 10:] = 5.0  # nearest: 4.0 m (1/5 = 0.2 D is nearer 0.25 than 0.167)
    t = focus_texture(stack, np.array(FOCUS), depth, window=3)
    np.testing.assert_allclose(t[:, :9], aif_texture(stack[0], 3)[:, :9])
    np.testing.assert_allclose(t[:, 10:], 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="agree"):
        focus_texture(stack[:3], np.array(FOCUS), depth)
    with pytest.raises(ValueError, match="positive"):
        focus_texture(stack, np.array(FOCUS), np.zeros((h, w), np.float32))
    with pytest.raises(ValueError, match="propagate_texture_from"):
        RefineConfig(propagate_texture_from="sharpest").validate()


def _propagation_trust(lens, monkeypatch, stack, aif, fitted, conf):
    """A function ``trust(**options)``: the trust one first-pass propagation gets from a refiner built with
    ``RefineConfig(**options)``, when the fit returns ``fitted`` and ``aif`` and the physics check ``conf``
    (fit, check and propagation replaced by fakes; one start, no median, no second pass)."""
    import model.refine as refine_mod
    from types import SimpleNamespace

    h, w = fitted.shape
    seen = {}

    def fake_propagate(d, a, trust, *args, **kwargs):
        seen["trust"] = np.array(trust)
        return np.array(d, np.float32)

    monkeypatch.setattr(refine_mod, "refine_prediction", lambda *a, **k: (fitted.copy(), aif.copy()))
    monkeypatch.setattr(refine_mod, "propagate_depth", fake_propagate)
    monkeypatch.setattr(RefiningRunner, "_check", lambda self, *a: SimpleNamespace(
        confidence=conf.copy(), residual=np.zeros((h, w), np.float32), rendered=stack.copy()))

    def trust(**options):
        cfg = RefineConfig(median_radius=0, second_iterations=(0, 0), far_start=0.0, **options)
        RefiningRunner(_FakeRunner(lens), cfg).refine(stack, FOCUS, Prediction(depth_m=fitted, aif=aif))
        return seen["trust"]

    return trust


def test_focus_texture_source_distrusts_a_halo_that_the_fitted_aif_shows_textured(lens, monkeypatch):
    """The fit gave a flat wall band the depth (1.0 m) of a textured object beside it, and its AIF there
    kept some of the object's texture. In the frame focused at 1.0 m the band is flat: with
    ``propagate_texture_from="focus"`` (or ``"both"``) the band loses its trust; with ``"aif"`` it keeps it."""
    h, w = 16, 48
    rng = np.random.default_rng(2)
    aif = rng.random((h, w, 3)).astype(np.float32)  # textured everywhere in the fitted AIF
    stack = np.repeat(aif[None], len(FOCUS), 0).copy()
    stack[0, :, 24:] = 0.5  # the frame focused at 1.0 m: the band is flat
    depth = np.full((h, w), 1.0, np.float32)
    trust = _propagation_trust(lens, monkeypatch, stack, aif, depth, np.full((h, w), 0.9, np.float32))
    # the texture term alone (this made-up stack gives the relative-blur cost nothing to agree with)
    t_aif, t_focus, t_both = (trust(propagate_texture_from=src, propagate_cost_agreement=False)
                              for src in ("aif", "focus", "both"))
    assert np.all(t_aif > 0.85)  # the AIF looks textured everywhere
    assert np.all(t_focus[:, 27:] < 1e-6) and np.all(t_focus[:, :21] > 0.85)
    np.testing.assert_allclose(t_both, np.minimum(t_aif, t_focus), atol=1e-6)


def test_cost_support_takes_trust_from_a_fit_the_stack_does_not_support(lens, monkeypatch):
    """Left plane fitted right (1.2 m), right plane fitted at 1.2 m instead of 3.0 m, both textured and passed by
    the physics check: with ``propagate_cost_agreement`` (the default) the right plane loses its trust, the left
    keeps it."""
    stack, aif, depth = _rendered_stack(lens, 48, 128)
    fitted = np.full(depth.shape, 1.2, np.float32)
    trust = _propagation_trust(lens, monkeypatch, stack, aif, fitted, np.full(depth.shape, 0.9, np.float32))
    left, right = (slice(10, -10), slice(8, 40)), (slice(10, -10), slice(88, 120))
    plain = trust(propagate_cost_agreement=False)
    assert np.median(plain[left]) > 0.8 and np.median(plain[right]) > 0.5  # texture and the check trust both
    assert RefineConfig().propagate_cost_agreement and RefineConfig().propagate_cost_distinct == 0.0
    agree = trust()
    assert np.median(agree[left]) > 0.6 and np.median(agree[right]) < 0.2
    assert np.all(agree <= plain + 1e-9)
    both = trust(propagate_cost_agreement=True, propagate_cost_distinct=0.3)
    assert np.all(both <= agree + 1e-9) and np.median(both[left]) > 0.5
    with pytest.raises(ValueError, match="propagate_cost_distinct"):
        RefineConfig(propagate_cost_distinct=1.5).validate()


def test_second_pass_starts_from_the_propagated_and_filtered_depth(lens, monkeypatch):
    import model.refine as refine_mod

    stack, aif, depth = _rendered_stack(lens, 24, 24)
    calls = []

    def fake_fit(images, focus_m, lens_, d, a, near_m, far_m, config, device=None, on_iteration=None):
        calls.append((np.array(d), config.scales, config.iterations))
        for i in range(sum(config.iterations) if on_iteration is not None else 0):
            on_iteration(i + 1, 0.0)
        return np.array(d) * 1.1, np.array(a)  # "the fit" moves the depth

    filled = []

    def fake_propagate(d, *args, **kwargs):
        filled.append(np.array(d) + 0.25)  # "the propagation" too
        return filled[-1]

    monkeypatch.setattr(refine_mod, "refine_prediction", fake_fit)
    monkeypatch.setattr(refine_mod, "propagate_depth", fake_propagate)
    cfg = RefineConfig(scales=(0.5, 1.0), iterations=(4, 2), second_scales=(1.0,), second_iterations=(3,), median_radius=0,
                       far_start=0.0)
    assert cfg.total_iterations == 9 and cfg.has_second_pass
    pred = RefiningRunner(_FakeRunner(lens), cfg, progress=True).refine(stack, FOCUS, Prediction(depth_m=depth, aif=aif))
    assert [c[1:] for c in calls] == [((0.5, 1.0), (4, 2)), ((1.0,), (3,))]
    np.testing.assert_allclose(calls[1][0], filled[0], rtol=1e-6)  # second fit starts from the first fill
    np.testing.assert_allclose(pred.depth_m, filled[1], rtol=1e-6)
    one = RefineConfig(second_iterations=(0, 0), far_start=0.0)
    assert not one.has_second_pass and one.total_iterations == 175
    calls.clear()
    RefiningRunner(_FakeRunner(lens), replace(one, median_radius=0)).refine(stack, FOCUS, Prediction(depth_m=depth, aif=aif))
    assert len(calls) == 1
    # the far start (the default) runs both passes once more, from a constant 0.8 x the range's far end (12 m)
    calls.clear()
    RefiningRunner(_FakeRunner(lens), replace(cfg, far_start=0.8)).refine(stack, FOCUS, Prediction(depth_m=depth, aif=aif))
    assert [c[1:] for c in calls] == [((0.5, 1.0), (4, 2)), ((1.0,), (3,))] * 2
    np.testing.assert_allclose(calls[2][0], np.full_like(depth, 0.8 * 12.0), rtol=1e-6)
    assert RefineConfig().far_start == 0.8 and RefineConfig().far_start_min_gain == 0.0
    assert RefineConfig().far_start_min_t == 3.0 and RefineConfig().far_start_block == 15
    with pytest.raises(ValueError, match="second_scales and second_iterations"):
        RefineConfig(second_scales=(1.0,), second_iterations=(1, 2)).validate()
    with pytest.raises(ValueError, match="second_scales must be"):
        RefineConfig(second_scales=(0.0,), second_iterations=(1,)).validate()


def test_weighted_median_removes_speckles_and_snaps_depth_edges_to_colour_edges():
    h, w = 24, 40
    aif = np.zeros((h, w, 3), np.float32)
    aif[:, w // 2:] = 1.0  # colour edge at column 20
    depth = np.full((h, w), 1.0, np.float32)
    depth[:, w // 2 - 2:] = 4.0  # depth edge 2 px off the colour edge (a halo of the far side)
    depth[5, 5] = 9.0  # an isolated speckle
    out = weighted_median_depth(depth, aif, radius=3, colour_sigma=0.1)
    assert out.shape == (h, w) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, : w // 2], 1.0, rtol=1e-5)  # halo and speckle gone
    np.testing.assert_allclose(out[:, w // 2:], 4.0, rtol=1e-5)  # the far side keeps its depth
    np.testing.assert_array_equal(weighted_median_depth(depth, aif, radius=0), depth)
    # chunking does not change the result
    np.testing.assert_allclose(weighted_median_depth(depth, aif, 3, 0.1, max_chunk_pixels=1), out, rtol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        weighted_median_depth(depth, aif[:-1])
    with pytest.raises(ValueError, match="finite, positive"):
        weighted_median_depth(-depth, aif)
    with pytest.raises(ValueError, match="median_radius"):
        RefineConfig(median_radius=-1).validate()


def test_bad_input_is_a_clear_error(lens):
    stack, aif, depth = _rendered_stack(lens, 32, 32)
    with pytest.raises(ValueError, match="do not match"):
        refine_prediction(stack, FOCUS, lens, depth[:16], aif, 0.5, 12.0)
    bad = depth.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite and positive"):
        refine_prediction(stack, FOCUS, lens, bad, aif, 0.5, 12.0)
    with pytest.raises(ValueError, match="scales"):
        RefineConfig(scales=(0.5, 1.0), iterations=(1,)).validate()
    with pytest.raises(ValueError, match="scales must be"):
        RefineConfig(scales=(2.0,), iterations=(1,)).validate()
    with pytest.raises(ValueError, match="psf_sigma_scale"):
        RefineConfig(psf_sigma_scale=float("nan")).validate()
    with pytest.raises(ValueError, match="positive"):
        propagate_depth(-depth, aif, np.ones_like(depth))


class _FakeRunner:
    """Returns a fixed, wrong prediction (what a poorly trained network would)."""

    name = "fake"

    def __init__(self, lens):
        self.lens = lens
        self.focus_m = FOCUS
        self.working_range_m = (0.5, 12.0)

    def predict(self, images, focus_m):
        s, h, w, _ = images.shape
        return Prediction(depth_m=np.full((h, w), 2.0, np.float32), aif=images[0].copy())


def test_refining_runner_wraps_any_runtime(lens):
    stack, _, depth_true = _rendered_stack(lens)
    runner = RefiningRunner(_FakeRunner(lens), RefineConfig(scales=(0.5, 1.0), iterations=(40, 10), max_radius_px=12))
    assert runner.name == "fake+refine" and runner.working_range_m == (0.5, 12.0)
    pred = runner.predict(stack, FOCUS)
    assert pred.depth_m.shape == depth_true.shape and pred.confidence is not None and pred.rendered.shape == stack.shape
    assert np.median(np.abs(np.log(pred.depth_m / depth_true))) < 0.5 * np.median(np.abs(np.log(2.0 / depth_true)))


@pytest.mark.parametrize("depth_m", [9.0, 1.2])
def test_far_start_recovers_a_surface_beyond_the_farthest_focus_and_keeps_a_near_one(lens, depth_m):
    # a textured plane rendered with the thin lens's disc (the evaluation renderer); the "network" says 2 m.
    # Beyond the farthest focus (6 m) the fit from 2 m stalls far too near (measured: 5.7 m for 9 m); from
    # the far start it reaches 8.9 m and the relative-blur cost picks it (consistently cheaper over the image,
    # the default test).
    # At 1.2 m the far start's result is costlier and the first start's stays.
    from model.synth.layered import render_stack_layered
    from model.synth.textures import random_texture

    aif = random_texture(np.random.default_rng(5), 64, 64, "train").astype(np.float32)
    stack = render_stack_layered(aif, np.full((64, 64), depth_m, np.float32), FOCUS, lens).astype(np.float32)
    cfg = RefineConfig(scales=(0.5, 1.0), iterations=(40, 10), second_scales=(1.0,), second_iterations=(10,),
                       max_radius_px=12)
    err = {}
    for far_start in (0.0, 0.8):
        pred = RefiningRunner(_FakeRunner(lens), replace(cfg, far_start=far_start)).predict(stack, FOCUS)
        err[far_start] = float(np.median(np.abs(np.log(pred.depth_m / depth_m))))
    if depth_m > FOCUS[-1]:
        assert err[0.0] > 0.2 and err[0.8] < 0.05, err
    else:
        assert err[0.0] < 0.05 and err[0.8] == pytest.approx(err[0.0], abs=1e-3), err
    assert replace(cfg, far_start=0.8).total_iterations == 2 * replace(cfg, far_start=0.0).total_iterations
    with pytest.raises(ValueError, match="far_start must be"):
        RefineConfig(far_start=1.5).validate()
    with pytest.raises(ValueError, match="far_start_min_gain"):
        RefineConfig(far_start_min_gain=1.0).validate()


def test_one_refinement_computes_the_stacks_relative_blur_cost_once(lens, monkeypatch):
    # two starts (far-start arbitration) and cost-support trust in all four propagations all read one cost grid;
    # the depth is the same as with a grid made afresh at every use
    import model.defocus_sweep as sweep

    stack, _, _ = _rendered_stack(lens, h=32, w=32)
    cfg = RefineConfig(scales=(1.0,), iterations=(3,), second_scales=(1.0,), second_iterations=(2,), max_radius_px=12,
                       far_start=0.8, propagate_cost_agreement=True, propagate_cost_distinct=0.3, median_radius=0)
    made = []
    real = sweep.cost_grid
    monkeypatch.setattr(sweep, "cost_grid", lambda *a, **k: made.append(1) or real(*a, **k))
    runner = RefiningRunner(_FakeRunner(lens), cfg)
    shared = runner.predict(stack, FOCUS).depth_m
    assert len(made) == 1

    class _Fresh:  # a grid made afresh at every use, as before the cache
        def __init__(self, *args):
            self.args = args

        def get(self):
            return real(*self.args)

    import model.refine as refine_module

    monkeypatch.setattr(refine_module, "_LazyCostGrid", _Fresh)
    made.clear()
    fresh = RefiningRunner(_FakeRunner(lens), cfg).predict(stack, FOCUS).depth_m
    assert np.array_equal(shared, fresh)


def test_block_t_statistic_measures_how_consistently_a_difference_is_positive():
    from model.refine import block_t_statistic

    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 1.0, (60, 90))
    assert abs(block_t_statistic(noise, 15)) < 3.5  # 24 blocks of pure noise
    assert block_t_statistic(noise + 1.0, 15) > 20  # a small, everywhere-positive shift is highly consistent
    assert block_t_statistic(-(noise + 1.0), 15) < -20
    # one block carrying the whole difference: same mean, not consistent
    lump = np.zeros((60, 90))
    lump[:15, :15] = 24.0
    assert block_t_statistic(lump, 15) == pytest.approx(1.0)  # mean 1, standard error 1 over 24 blocks
    # the block means by hand (partial blocks at the border left out)
    d = rng.normal(0.5, 1.0, (32, 47))
    means = d[:30, :45].reshape(2, 15, 3, 15).mean(axis=(1, 3)).ravel()
    want = means.mean() / (means.std(ddof=1) / np.sqrt(6))
    assert block_t_statistic(d, 15) == pytest.approx(want)
    assert block_t_statistic(np.ones((14, 14)), 15) == 0.0  # no whole block
    assert block_t_statistic(np.zeros((30, 30)), 15) == 0.0
    assert block_t_statistic(np.full((30, 30), 2.0), 15) == np.inf
    with pytest.raises(ValueError, match="diff must be"):
        block_t_statistic(np.ones(10), 3)


class _StubGrid:
    """A _LazyCostGrid stand-in: the cost of a map is given per map (first, far)."""

    def __init__(self, costs):
        self.costs = costs

    def get(self):
        return self

    def at(self, maps):
        return np.stack(self.costs)


def test_far_start_arbitration_with_a_consistency_test(lens):
    rng = np.random.default_rng(1)
    h, w = 60, 90
    first = (np.full((h, w), 1.0, np.float32), np.zeros((h, w, 3), np.float32))
    far = (np.full((h, w), 9.0, np.float32), np.zeros((h, w, 3), np.float32))
    base = 1.0 + 0.1 * rng.random((h, w))
    small_consistent = _StubGrid([base, base * 0.98])  # 2 % cheaper everywhere
    big_lump = np.array(base)
    big_lump[:15, :45] -= 0.96  # 11 % cheaper on average, all of it in 3 of the 24 blocks (t about 1.8)
    lumped = _StubGrid([base, big_lump])
    # the rule before: a mean gain of 10 %
    gain_rule = RefiningRunner(_FakeRunner(lens), RefineConfig(far_start_min_gain=0.1, far_start_min_t=0.0))
    t_rule = RefiningRunner(_FakeRunner(lens), RefineConfig())  # the default: consistency, no minimum gain
    both = RefiningRunner(_FakeRunner(lens), RefineConfig(far_start_min_gain=0.1, far_start_min_t=3.0))
    assert gain_rule._arbitrate(small_consistent, first, far) is first  # 2 % is below the gain
    assert t_rule._arbitrate(small_consistent, first, far) is far  # but consistent over the image
    assert gain_rule._arbitrate(lumped, first, far) is far  # a large mean gain from one region
    assert t_rule._arbitrate(lumped, first, far) is first  # is not consistent
    assert both._arbitrate(lumped, first, far) is first and both._arbitrate(small_consistent, first, far) is first
    worse = _StubGrid([base, base * 1.02])
    assert t_rule._arbitrate(worse, first, far) is first and gain_rule._arbitrate(worse, first, far) is first
    with pytest.raises(ValueError, match="far_start_min_t"):
        RefineConfig(far_start_min_t=-1.0).validate()
    with pytest.raises(ValueError, match="far_start_min_t"):
        RefineConfig(far_start_min_t=float("nan")).validate()
    with pytest.raises(ValueError, match="far_start_block"):
        RefineConfig(far_start_block=0).validate()


def test_sweep_rounds_walk_to_the_surface_without_gradient_fits(lens, monkeypatch):
    # a textured plane at 3.5 m rendered with the thin lens's disc; the "network" says 2 m. One sweep round may move
    # a pixel's blur code by the sweep's band (1.35x) only, so it stops short; four rounds reach the plane. With
    # rounds and no fit iterations (FAST_REFINE's form) no gradient fit runs.
    import model.refine as refine_module
    from model.refine import FAST_REFINE
    from model.synth.layered import render_stack_layered
    from model.synth.textures import random_texture

    aif = random_texture(np.random.default_rng(3), 64, 64, "train").astype(np.float32)
    stack = render_stack_layered(aif, np.full((64, 64), 3.5, np.float32), FOCUS, lens).astype(np.float32)
    monkeypatch.setattr(refine_module, "refine_prediction",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("the fast refinement must not fit")))
    err = {}
    for rounds in (1, 4):
        pred = RefiningRunner(_FakeRunner(lens), replace(FAST_REFINE, sweep_rounds=rounds)).predict(stack, FOCUS)
        assert pred.confidence is not None and np.array_equal(pred.aif, stack[0])  # the AIF stays the runner's
        err[rounds] = float(np.median(np.abs(np.log(pred.depth_m / 3.5))))
        assert replace(FAST_REFINE, sweep_rounds=rounds).total_iterations == rounds
    assert err[1] > 0.15 and err[4] < 0.05, err
    assert FAST_REFINE.far_start == 0 and sum(FAST_REFINE.iterations) == sum(FAST_REFINE.second_iterations) == 0
    for bad in (-1, 17, True, 2.0):
        with pytest.raises(ValueError, match="sweep_rounds"):
            RefineConfig(sweep_rounds=bad).validate()
