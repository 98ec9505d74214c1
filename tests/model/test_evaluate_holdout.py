"""Held-back slice re-rendering (model.evaluate): the one re-rendering, the classical reference, the stack's lens."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from model.checkpoint import save_checkpoint
from model.evaluate import classical_prediction, evaluate_folder, format_table, holdout_scores, render_slice
from model.formats import FocalStack, write_stack
from model.lens import LensProfile
from model.network import DAIFNet, NetConfig
from model.optics import blur_per_dioptre_px
from model.runners import create_runner

REF = LensProfile(0.05, 8.0, 12e-6, name="ref", image_size=(320, 240))
CMOUNT = LensProfile(0.016, 1.4, 19.6e-6, name="cmount", image_size=(320, 240))


def _texture(h: int = 48, w: int = 56, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((h // 4, w // 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), 0, 1)


def _sigma_px(depth: float, focus: float, lens: LensProfile) -> float:
    """Thin-lens Gaussian sigma written out here (c = A f |d - d_f| / (d (d_f - f)), sigma = c / (4 p))."""
    f, a = lens.focal_length_m, lens.focal_length_m / lens.f_number
    return a * f * abs(depth - focus) / (depth * (focus - f)) / (4 * lens.pixel_pitch_m)


def _two_plane_stack(lens: LensProfile, focus: list[float], near: float, far: float) -> FocalStack:
    """Left half a plane at ``near``, right half at ``far``; each slice blurred with cv2 (an independent renderer)."""
    aif = _texture()
    w = aif.shape[1]
    frames = []
    for fd in focus:
        left = cv2.GaussianBlur(aif, (0, 0), max(_sigma_px(near, fd, lens), 1e-3), borderType=cv2.BORDER_REFLECT)
        right = cv2.GaussianBlur(aif, (0, 0), max(_sigma_px(far, fd, lens), 1e-3), borderType=cv2.BORDER_REFLECT)
        frames.append(np.concatenate([left[:, : w // 2], right[:, w // 2:]], axis=1))
    return FocalStack(images=np.stack(frames).astype(np.float32), focus_m=np.array(focus), lens=lens)


def test_render_slice_keeps_the_focused_plane_and_blurs_the_rest():
    aif = _texture()
    in_focus = render_slice(aif, np.full(aif.shape[:2], 2.0), 2.0, REF)
    assert in_focus.shape == aif.shape and in_focus.dtype == np.float32
    assert np.abs(in_focus - aif).mean() < 0.05  # only the renderer's sub-pixel floor
    blurred = render_slice(aif, np.full(aif.shape[:2], 0.8), 4.0, REF)
    expected = cv2.GaussianBlur(aif, (0, 0), _sigma_px(0.8, 4.0, REF), borderType=cv2.BORDER_REFLECT)
    inner = (slice(12, -12), slice(12, -12))  # away from the borders, where the two renderers pad differently
    assert np.abs(blurred[inner] - expected[inner]).mean() < 0.02
    assert blurred.std() < 0.8 * aif.std()
    flat = render_slice(np.full((16, 16, 3), 0.3, np.float32), np.full((16, 16), 1.3), 4.0, REF)
    assert np.allclose(flat, 0.3, atol=1e-5)
    with pytest.raises(ValueError, match="same size"):
        render_slice(aif, np.ones((4, 4)), 2.0, REF)


def test_classical_prediction_finds_the_planes_and_composes_the_sharp_pixels():
    st = _two_plane_stack(REF, [1.0, 1.5, 2.5, 4.0, 6.0], near=1.5, far=4.0)
    depth, aif = classical_prediction(st.images, st.focus_m)
    assert depth.shape == st.images.shape[1:3] and aif.shape == st.images.shape[1:]
    w = depth.shape[1]
    assert np.median(depth[8:-8, 4 : w // 2 - 8]) == pytest.approx(1.5, rel=0.1)
    assert np.median(depth[8:-8, w // 2 + 8 : -4]) == pytest.approx(4.0, rel=0.1)
    truth = _texture()
    comp_err = np.abs(aif - truth)[8:-8, 4:-4].mean()
    assert comp_err < 0.5 * min(np.abs(frame - truth)[8:-8, 4:-4].mean() for frame in st.images)


@pytest.fixture
def tiny_lens_specific(tmp_path):
    net = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12.0))
    return save_checkpoint(tmp_path / "specific.pt", net, REF, [1.0, 1.5, 2.5, 4.0, 6.0])


@pytest.fixture
def tiny_lens_aware(tmp_path):
    net = DAIFNet(NetConfig(width=4, depth=2, focus_code="blur")).set_lens(REF)
    return save_checkpoint(tmp_path / "aware.pt", net, REF, [1.0, 1.5, 2.5, 4.0, 6.0])


def test_holdout_scores_the_network_and_the_classical_reference(tiny_lens_specific):
    st = _two_plane_stack(REF, [1.0, 1.5, 2.5, 4.0], near=1.5, far=4.0)
    runner = create_runner("torch", tiny_lens_specific, device="cpu", with_confidence=False)
    res = holdout_scores(runner, st)
    assert set(res) == {"network", "classical"}
    for scores in res.values():
        assert set(scores) == {"psnr", "ssim", "l1"}
        assert math.isfinite(scores["psnr"]) and -1 <= scores["ssim"] <= 1 and 0 <= scores["l1"] <= 1
    # on a clean two-plane stack the classical reference re-renders the held-back slices well, an untrained net not
    assert res["classical"]["psnr"] > 20 and res["classical"]["psnr"] > res["network"]["psnr"] + 3  # untrained net
    assert set(holdout_scores(runner, st, reference=False)) == {"network"}
    from model.refine import FAST_REFINE, RefiningRunner

    other = create_runner("torch", tiny_lens_specific, device="cpu", with_confidence=False)
    with pytest.raises(ValueError, match="must wrap the runner"):
        holdout_scores(runner, st, refiner=RefiningRunner(other, FAST_REFINE, device="cpu"))
    with pytest.raises(ValueError, match="at least 3 frames"):
        holdout_scores(runner, FocalStack(images=st.images[:2], focus_m=st.focus_m[:2], lens=REF))


def test_holdout_swap_scores_each_part_of_the_prediction_against_the_reference():
    """With the parts swapped, a prediction whose depth is the reference's scores like the reference when given the
    reference's AIF, and like itself when the reference's depth takes its own AIF."""
    from types import SimpleNamespace

    st = _two_plane_stack(REF, [1.0, 1.5, 2.5, 4.0], near=1.5, far=4.0)

    class SameDepthGreyAIF:  # a stand-in runner: the reference's depth, a flat grey AIF
        lens = st.lens

        def predict(self, images, focus):
            depth, _ = classical_prediction(images, focus)
            return SimpleNamespace(depth_m=depth, aif=np.full(images.shape[1:], 0.5, np.float32))

    res = holdout_scores(SameDepthGreyAIF(), st, swap=True)
    assert set(res) == {"network", "classical", "network_depth_classical_aif", "classical_depth_network_aif"}
    assert res["network_depth_classical_aif"] == pytest.approx(res["classical"])
    assert res["classical_depth_network_aif"] == pytest.approx(res["network"])
    assert res["classical"]["psnr"] > res["network"]["psnr"] + 3  # the grey AIF is what loses
    assert set(holdout_scores(SameDepthGreyAIF(), st)) == {"network", "classical"}


def test_holdout_gives_a_lens_aware_model_the_stack_lens(tiny_lens_aware):
    runner = create_runner("torch", tiny_lens_aware, device="cpu", with_confidence=False)
    assert runner.lens == REF
    st = _two_plane_stack(CMOUNT, [0.35, 0.5, 0.7, 1.0], near=0.45, far=0.9)
    res = holdout_scores(runner, st)
    assert runner.lens == CMOUNT
    assert float(runner.model.net.blur_per_dioptre) == pytest.approx(blur_per_dioptre_px(CMOUNT), rel=1e-6)
    assert set(res) == {"network", "classical"}


def test_holdout_refuses_a_lens_specific_model_for_another_lens_unless_told(tiny_lens_specific):
    runner = create_runner("torch", tiny_lens_specific, device="cpu", with_confidence=False)
    st = _two_plane_stack(CMOUNT, [0.35, 0.5, 0.7], near=0.45, far=0.9)
    with pytest.raises(ValueError, match="differs from the model's lens"):
        holdout_scores(runner, st)
    res = holdout_scores(runner, st, ignore_lens=True)
    assert runner.lens == REF and math.isfinite(res["network"]["psnr"])


def test_evaluate_folder_reports_both_held_back_scores(tmp_path, tiny_lens_aware):
    write_stack(tmp_path / "data" / "a", _two_plane_stack(CMOUNT, [0.35, 0.5, 0.7, 1.0], near=0.45, far=0.9))
    res = evaluate_folder(tmp_path / "data", tiny_lens_aware, runtime="torch", device="cpu")
    assert res["heldout"]["stacks"] == 1 and res["heldout_classical"]["stacks"] == 1
    row = res["per_stack"][0]
    assert set(row["heldout"]) == set(row["heldout_classical"]) == {"psnr", "ssim", "l1"}
    table = format_table(res)
    assert "DAIF-Net" in table and "depth-from-focus + sharpest-pixel AIF" in table
    assert "heldout_network_depth_classical_aif" not in res
    swapped = evaluate_folder(tmp_path / "data", tiny_lens_aware, runtime="torch", device="cpu", swap=True)
    for key in ("heldout_network_depth_classical_aif", "heldout_classical_depth_network_aif"):
        assert swapped[key]["stacks"] == 1 and set(swapped["per_stack"][0][key]) == {"psnr", "ssim", "l1"}
    assert "DAIF-Net depth + sharpest-pixel AIF" in format_table(swapped)


def test_evaluate_folder_refines_with_each_stack_s_lens(tmp_path, tiny_lens_aware, monkeypatch):
    """--refine fits through the stack's lens and its depth range, not the model's stored lens (the refiner
    wraps the runner and is bound with it: before, a C-mount stack was refined through the reference lens)."""
    import model.refine as refine_mod

    seen = []

    def fake_fit(images, focus_m, lens, depth_m, aif, near_m, far_m, *a, **k):
        seen.append((lens, near_m, far_m))
        return depth_m, aif

    monkeypatch.setattr(refine_mod, "refine_prediction", fake_fit)
    st = _two_plane_stack(CMOUNT, [0.35, 0.5, 0.7, 1.0], near=0.45, far=0.9)
    st = FocalStack(images=st.images, focus_m=st.focus_m, lens=st.lens,
                    depth=np.where(np.arange(56) < 28, 0.45, 0.9)[None].repeat(48, 0).astype(np.float32))
    write_stack(tmp_path / "data" / "a", st)
    res = evaluate_folder(tmp_path / "data", tiny_lens_aware, runtime="torch", device="cpu", refine=True)
    assert res["refined"]["stacks"] == 1
    k = blur_per_dioptre_px(CMOUNT)
    assert seen and all(blur_per_dioptre_px(lens) == pytest.approx(k, rel=1e-6) for lens, _, _ in seen)
    assert seen[0][1:] == pytest.approx((k / 13.02, k / 0.5425), rel=1e-3)


def test_evaluate_folder_holds_back_slices_for_the_fast_refinement_through_each_stack_s_lens(tmp_path, tiny_lens_aware,
                                                                                             monkeypatch):
    import model.defocus_sweep as sweep_mod

    seen = []
    real = sweep_mod.sweep_depth
    monkeypatch.setattr(sweep_mod, "sweep_depth", lambda images, focus_m, lens, *a, **k: seen.append(
        (lens, len(focus_m))) or real(images, focus_m, lens, *a, **k))
    from model.runners import TorchRunner

    calls = []
    real_predict = TorchRunner.predict
    monkeypatch.setattr(TorchRunner, "predict", lambda self, *a, **k: calls.append(1) or real_predict(self, *a, **k))
    write_stack(tmp_path / "data" / "a", _two_plane_stack(CMOUNT, [0.35, 0.5, 0.7, 1.0], near=0.45, far=0.9))
    res = evaluate_folder(tmp_path / "data", tiny_lens_aware, runtime="torch", device="cpu", fast_refine=True)
    assert res["heldout_fast_refined"]["stacks"] == 1 and res["heldout"]["stacks"] == 1
    assert len(calls) == 2  # the network runs once per held-back slice; the fast refinement refines that prediction
    assert set(res["per_stack"][0]["heldout_fast_refined"]) == {"psnr", "ssim", "l1"}
    # two inner slices held back in turn, FAST_REFINE's sweep rounds each, every one with the stack's lens and 3 kept
    # slices
    from model.refine import FAST_REFINE

    k = blur_per_dioptre_px(CMOUNT)
    assert len(seen) == 2 * FAST_REFINE.sweep_rounds and all(blur_per_dioptre_px(lens) == pytest.approx(k, rel=1e-6) and n == 3 for lens, n in seen)
    assert "DAIF-Net + fast refine" in format_table(res)
