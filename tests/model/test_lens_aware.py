"""The lens-aware (blur-coded) network, lens sampling, the lens-range check and the evaluation suite."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint
from model.lens import LensProfile
from model.lens_range import LensOutOfRangeError, check_lens_supported
from model.lens_sampling import LensSampling, draw_lens_and_focus
from model.network import DAIFNet, NetConfig, lens_aware_config
from model.optics import blur_per_dioptre_px, coc_sigma_px
from model.runners import bind_lens

REF = LensProfile(0.05, 8.0, 12e-6, name="ref", image_size=(320, 240))
CMOUNT = LensProfile(0.016, 1.4, 19.6e-6, name="cmount", image_size=(320, 240))


def test_blur_per_dioptre_is_the_blur_slope_far_from_the_lens():
    k = blur_per_dioptre_px(REF)
    assert k == pytest.approx(0.05**2 / (4 * 8 * 12e-6))
    # sigma = K d_f/(d_f - f) |1/d_f - 1/d|
    d_f, d = 3.0, 1.2
    assert coc_sigma_px(d, d_f, REF) == pytest.approx(k * d_f / (d_f - 0.05) * abs(1 / d_f - 1 / d), rel=1e-9)


def test_blur_coded_twin_gives_the_same_outputs_for_its_lens():
    torch.manual_seed(0)
    legacy = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12.0)).eval()
    from dataclasses import replace

    # with the AIF head (aif="head") every output is the same; by default the twin's AIF is the
    # depth-guided composite of the frames (model.network), its depth still the same
    twin = DAIFNet(replace(lens_aware_config(legacy.config, REF), aif="head")).eval()
    twin.load_state_dict(legacy.state_dict())
    twin.set_lens(REF)
    composite = DAIFNet(lens_aware_config(legacy.config, REF)).eval()
    composite.load_state_dict(legacy.state_dict())
    composite.set_lens(REF)
    x = torch.rand(1, 5, 3, 16, 16)
    f = torch.tensor([[1.0, 1.5, 2.5, 4.0, 6.0]])
    with torch.no_grad():
        a, b, c = legacy(x, f), twin(x, f), composite(x, f)
    assert torch.allclose(a.depth_m, b.depth_m, rtol=1e-5) and torch.allclose(a.depth_m, c.depth_m, rtol=1e-5)
    assert torch.allclose(a.aif, b.aif, atol=1e-6)
    assert not torch.allclose(a.aif, c.aif, atol=1e-3)
    assert twin.working_range_m() == pytest.approx((0.5, 12.0))


def test_blur_coding_scales_depth_with_the_lens():
    """Doubling K and every focus distance leaves the codes alone and doubles the metric depth."""
    torch.manual_seed(1)
    net = DAIFNet(NetConfig(width=4, depth=2, focus_code="blur")).eval()
    x = torch.rand(2, 3, 3, 16, 16)
    f = torch.tensor([[0.5, 1.0, 2.0], [0.4, 0.9, 3.0]])
    k = torch.tensor([2.0, 5.0])
    with torch.no_grad():
        a = net(x, f, k).depth_m
        b = net(x, 2 * f, 2 * k).depth_m
    assert torch.allclose(b, 2 * a, rtol=1e-5)
    # an inverse-depth network ignores k
    legacy = DAIFNet(NetConfig(width=4, depth=2)).eval()
    with torch.no_grad():
        assert torch.equal(legacy(x, f).depth_m, legacy(x, f, k).depth_m)


def test_lens_draws_cover_the_axis_and_are_consistent():
    s = LensSampling()
    lo, hi = s.x_range
    rng = np.random.default_rng(0)
    far_beyond = near_before = wide = 0
    for _ in range(300):
        d = draw_lens_and_focus(rng, s)
        assert blur_per_dioptre_px(d.lens) == pytest.approx(d.k, rel=1e-9)
        assert s.k_range[0] <= d.k <= s.k_range[1]
        codes = d.k / d.focus_m
        assert s.stack_size[0] <= len(codes) <= s.stack_size[1]
        assert np.all(np.diff(d.focus_m) >= 0)
        assert codes.min() >= lo * (1 - 1e-9) and codes.max() <= hi * (1 + 1e-9)
        assert codes.max() - codes.min() > 0
        wide += codes.max() - codes.min() >= s.min_focus_span_px
        assert d.working_range_m[0] <= d.scene_range_m[0] < d.scene_range_m[1] <= d.working_range_m[1] * (1 + 1e-9)
        assert d.lens.focal_length_m < 0.11 * d.focus_m.min()
        far_beyond += d.scene_range_m[1] > d.focus_m.max() * 1.05
        near_before += d.scene_range_m[0] < d.focus_m.min() * 0.95
    assert wide > 240  # one draw per bin can land close together; most sets span the minimum
    assert far_beyond > 150 and near_before > 150  # backgrounds beyond and objects before the focus set


def test_lens_range_check_says_what_to_change():
    cfg = NetConfig(focus_code="blur")
    assert check_lens_supported(cfg, CMOUNT, [0.35, 0.5, 0.7, 1.0, 1.5], "x") == []
    with pytest.raises(LensOutOfRangeError, match=r"stack\.json.*0\.075 m.*86\.8 px.*downscale the images by 6\.7x"):
        check_lens_supported(cfg, REF, [0.05 * 1.5, 1.0], "stack.json")
    with pytest.raises(LensOutOfRangeError, match="nearer"):
        check_lens_supported(cfg, CMOUNT, [0.35, 20.0], "stack.json")
    phone = LensProfile(0.0043, 1.9, 13.7e-6, name="phone")  # K ~ 0.18 px/dioptre
    with pytest.raises(LensOutOfRangeError, match="cannot tell depths apart"):
        check_lens_supported(cfg, phone, [0.5, 1.7], "sweep")
    warn = check_lens_supported(cfg, CMOUNT, [0.5, 0.52], "close")
    assert warn and "poorly determined" in warn[0]


class _Runner:
    def __init__(self, net, lens):
        self.model = type("M", (), {"net": net})()
        self.lens = lens
        self.focus_m = [1.0, 6.0]


def test_bind_lens_gives_a_lens_aware_model_the_stack_lens_and_refuses_mismatch_otherwise():
    aware = _Runner(DAIFNet(NetConfig(width=4, depth=2, focus_code="blur")).set_lens(REF), REF)
    bind_lens(aware, CMOUNT, [0.35, 1.5], "s")
    assert aware.lens is CMOUNT
    assert float(aware.model.net.blur_per_dioptre) == pytest.approx(blur_per_dioptre_px(CMOUNT), rel=1e-6)
    assert aware.model.net.working_range_m()[1] == pytest.approx(blur_per_dioptre_px(CMOUNT) / 0.5425, rel=1e-6)
    legacy = _Runner(DAIFNet(NetConfig(width=4, depth=2)), REF)
    with pytest.raises(ValueError, match="differs from the model's lens"):
        bind_lens(legacy, CMOUNT, [0.35, 1.5], "s")
    bind_lens(legacy, CMOUNT, [0.35, 1.5], "s", ignore_lens=True)  # runs anyway with its own optics
    assert legacy.lens is REF


def test_shipped_model_loads_with_its_lens_set():
    m = load_checkpoint(None)
    if m.net.lens_aware:
        assert float(m.net.blur_per_dioptre) == pytest.approx(blur_per_dioptre_px(m.lens), rel=1e-6)
    near, far = m.net.working_range_m()
    assert 0 < near < min(m.focus_m) and far > max(m.focus_m)


def test_eval_suite_renders_every_family_and_lens(tmp_path):
    from model.eval_suite import FAMILIES, SUITE_LENSES, make_suite
    from model.formats import read_stack

    paths = make_suite(tmp_path / "suite", "tune", per_family=1, progress=False)
    assert len(paths) == len(FAMILIES) * len(SUITE_LENSES)
    index = json.loads((tmp_path / "suite" / "suite.json").read_text())
    assert {r["family"] for r in index["stacks"]} == set(FAMILIES)
    for p in paths:
        st = read_stack(p)
        lens = next(sl for sl in SUITE_LENSES if p.name.startswith(sl.name))
        d = st.depth[np.isfinite(st.depth)]
        fam = p.name.split("_")[-2]
        if fam == "far":
            assert d.min() > max(lens.focus_m) * 1.05
        if fam == "mid":
            assert d.min() >= min(lens.focus_m) * 0.999 and d.max() <= max(lens.focus_m) * 1.001
        assert st.images.shape[0] == len(lens.focus_m)
        assert not math.isclose(float(st.images[0].std()), 0.0)


def test_lens_aware_training_runs_and_saves_a_blur_coded_model(tmp_path):
    from model.train_config import TrainConfig
    from model.trainer import Trainer

    cfg = TrainConfig(out_dir=str(tmp_path / "run"), lens_aware=True, width=4, depth=2, crop=32, batch_size=2,
                      steps=2, num_workers=0, val_stacks=2, val_every=2, ckpt_every=2, image_every=100,
                      stack_size_min=2, stack_size_max=3, max_psf_radius=8, warmup_steps=1)
    tr = Trainer(cfg, progress=False)
    tr.train()
    m = load_checkpoint(tmp_path / "run" / "last.pt")
    assert m.net.config.focus_code == "blur"
    batch = next(iter(tr.training_data(seed=3)))
    assert "k" in batch and batch["lens"].shape == (2, 3)


def test_bind_lens_updates_a_refining_wrapper_s_lens_and_depth_range():
    inner = _Runner(DAIFNet(NetConfig(width=4, depth=2, focus_code="blur")).set_lens(REF), REF)
    wrapper = type("W", (), {})()
    wrapper.inner, wrapper.lens, wrapper.working_range_m = inner, REF, (0.5, 12.0)
    bind_lens(wrapper, CMOUNT, [0.35, 1.5], "s")
    k = blur_per_dioptre_px(CMOUNT)
    assert wrapper.lens is CMOUNT and inner.lens is CMOUNT
    assert wrapper.working_range_m == pytest.approx((k / 13.02, k / 0.5425), rel=1e-4)


def test_focus_sets_can_be_drawn_where_real_sweeps_put_them():
    s = LensSampling(k_range=(1.0, 10.0), far_focus_px=(0.8, 2.0), focus_span_px=(3.0, 7.0), stack_size=(3, 7))
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = draw_lens_and_focus(rng, s)
        codes = np.sort(d.k / d.focus_m)
        # the set lies in [x_far, x_far + span]; a one-per-bin draw may start up to one bin above x_far
        assert 0.8 * (1 - 1e-9) <= codes[0] <= 2.0 + 7.0 / len(codes) + 1e-9
        assert codes[-1] <= 2.0 + 7.0 + 1e-9 and codes[-1] - codes[0] <= 7.0 + 1e-9
        assert codes[-1] >= 0.8 + 3.0 * (1 - 1 / len(codes)) - 1e-9
    with pytest.raises(ValueError, match="focus_span_px"):
        LensSampling(focus_span_px=(5.0, 2.0))
    # scenes wholly beyond the farthest focus, or around the nearest, when asked for
    s2 = LensSampling(far_focus_px=(0.8, 2.0), focus_span_px=(3.0, 7.0), far_scene_prob=0.5, near_scene_prob=0.5)
    far = near = 0
    for _ in range(200):
        d = draw_lens_and_focus(rng, s2)
        lo, hi = d.scene_range_m
        assert d.working_range_m[0] <= lo < hi <= d.working_range_m[1] * (1 + 1e-9)
        far += lo > d.focus_m.max() * 1.04
        near += hi < d.focus_m.min() / 0.69 and lo < d.focus_m.min() / 1.29
    assert far + near == 200 and far > 70 and near > 70


def test_disc_rendered_and_vignetted_batches(tmp_path):
    from model.data import SynthConfig, SyntheticStacks
    from model.synth.noise import NO_NOISE

    lens = LensProfile(0.05, 8.0, 12e-6)
    base = dict(lens=lens, crop_hw=(32, 32), batch_size=2, seed=4, noise=NO_NOISE, augment=False)
    gauss = SyntheticStacks(SynthConfig(**base)).make(0)
    disc = SyntheticStacks(SynthConfig(**base, disc_prob=1.0)).make(0)
    # same scene, same focus: only the PSF differs (disc vs Gaussian), and both are sharp where in focus
    assert torch.equal(gauss["aif"], disc["aif"]) and torch.equal(gauss["focus_m"], disc["focus_m"])
    assert disc["images"].shape == gauss["images"].shape == (2, 5, 3, 32, 32)
    diff = (disc["images"] - gauss["images"]).abs().mean().item()
    assert 1e-4 < diff < 0.1
    vig = SyntheticStacks(SynthConfig(**base, vignetting=0.5)).make(0)
    ratio = (vig["aif"] / gauss["aif"].clamp_min(1e-3))[gauss["aif"] > 0.05]
    assert ratio.max().item() <= 1.0 + 1e-5 and ratio.min().item() < 0.97  # darker towards the corners only
    with pytest.raises(ValueError, match="disc_prob"):
        SynthConfig(**base, disc_prob=1.5)


def test_freeze_bn_keeps_running_statistics_and_suite_validation_picks_best(tmp_path):
    from model.eval_suite import make_suite
    from model.train_config import TrainConfig
    from model.trainer import Trainer

    make_suite(tmp_path / "suite", "tune", per_family=1, progress=False)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), lens_aware=True, width=4, depth=2, crop=32, batch_size=2,
                      steps=2, num_workers=0, val_every=2, ckpt_every=2, image_every=100, stack_size_min=2,
                      stack_size_max=3, max_psf_radius=8, warmup_steps=1, freeze_bn=True,
                      val_suite=str(tmp_path / "suite"), far_focus_px=[0.8, 2.0], focus_span_px=[3.0, 7.0],
                      disc_prob=0.5, vignetting=0.1, ema_decay=0.5)
    tr = Trainer(cfg, progress=False)
    stats = {k: v.clone() for k, v in tr.net.state_dict().items() if "running" in k}
    metrics = tr.train()
    assert all(torch.equal(stats[k], tr.net.state_dict()[k]) for k in stats)
    assert metrics["stacks"] == 18 and 0 <= metrics["d1"] <= 1
    assert (tmp_path / "run" / "best.pt").is_file()  # the start was validated and saved as the first best
    # the weight average is what is validated; last.pt keeps raw weights and the average, and resumes both
    raw, avg = tr.net.state_dict(), tr.ema.state_dict()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if "weight" in k)
    from model.checkpoint import read_checkpoint

    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(ck["ema_state_dict"][k], avg[k].cpu()) for k in avg)
    cfg.steps = 3
    tr2 = Trainer(cfg, progress=False)
    assert tr2.step == 2 and all(torch.equal(tr2.ema.state_dict()[k], avg[k]) for k in avg)


def test_composite_aif_takes_each_pixel_from_the_frame_its_predicted_depth_makes_sharpest():
    torch.manual_seed(0)
    net = DAIFNet(NetConfig(width=4, depth=2, focus_code="blur")).eval()
    assert net.composite_aif and not DAIFNet(NetConfig(width=4, depth=2)).composite_aif
    images = torch.rand(1, 3, 3, 16, 16)
    focus = torch.tensor([[1.0, 2.0, 4.0]])
    k = torch.tensor([6.0])
    with torch.no_grad():
        out = net(images, focus, k)
        x = 6.0 / out.depth_m  # the predicted blur code, pixels
        sigma = (6.0 / focus.reshape(1, 3, 1, 1) - x).abs()
    w = torch.softmax(-sigma / 0.25, dim=1)
    assert torch.allclose(out.aif, (w.unsqueeze(2) * images).sum(1), atol=1e-4)
    net.train()  # training re-renders from the AIF head
    head = net(images, focus, k).aif
    assert not torch.allclose(head, out.aif, atol=1e-3)
    with pytest.raises(ValueError, match="composite"):
        NetConfig(aif="composite")  # needs the blur coding


def test_bind_lens_reaches_every_level_of_nested_wrappers():
    """predict --sweep --refine wraps twice (refine around sweep around the model): all levels take the lens."""
    from model.runners import RunnerWrapper

    base = _Runner(DAIFNet(NetConfig(width=4, depth=2, focus_code="blur")).set_lens(REF), REF)
    base.name = "torch"
    sweep = RunnerWrapper(base, "sweep")
    refine = RunnerWrapper(sweep, "refine")
    bind_lens(refine, CMOUNT, [0.35, 1.5], "s")
    k = blur_per_dioptre_px(CMOUNT)
    assert base.lens is CMOUNT and sweep.lens is CMOUNT and refine.lens is CMOUNT
    for w in (sweep, refine):
        assert w.working_range_m == pytest.approx((k / 13.02, k / 0.5425), rel=1e-4)
