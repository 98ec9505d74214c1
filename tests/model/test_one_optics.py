"""The single homes of issue 14: blur scale and infinity focus in model.optics, breathing, the one
re-rendering (model.render.rerender_stack) and the runtime registry of model.runners."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model.lens import LensProfile
from model.optics import (
    breathing_magnification,
    coc_diameter_m,
    coc_px_per_dioptre,
    coc_sigma_px,
    coc_sigma_px_dioptres,
    defocus_sigma_map,
    sensor_distance_m,
)
from model.render import DEFAULT_MAX_RADIUS_PX, MAX_RADIUS_PX, capped_window_radius, psf_window_radius, render_stack, rerender_stack

LENS = LensProfile(focal_length_m=0.025, f_number=2.0, pixel_pitch_m=20e-6, name="t")


def test_blur_scale_multiplies_the_blur_and_defaults_to_the_moment_matched_one() -> None:
    d = np.array([0.4, 1.0, 3.0, 9.0])
    base = coc_sigma_px(d, 1.5, LENS)
    np.testing.assert_array_equal(base, coc_diameter_m(d, 1.5, LENS) / (4 * LENS.pixel_pitch_m))
    np.testing.assert_allclose(coc_sigma_px(d, 1.5, LENS, blur_scale=1.08), 1.08 * base, rtol=1e-12)
    depth = torch.tensor(d, dtype=torch.float32).view(1, 1, 2, 2)
    focus = torch.tensor([[0.8, 2.0]])
    torch.testing.assert_close(defocus_sigma_map(depth, focus, LENS, blur_scale=0.5), 0.5 * defocus_sigma_map(depth, focus, LENS))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="blur_scale"):
            coc_sigma_px(d, 1.5, LENS, blur_scale=bad)


def test_dioptre_form_matches_and_goes_past_infinity() -> None:
    for dpt in (0.25, 1.0, 4.0):
        for d in (0.3, 1.0, 5.0):
            assert coc_sigma_px_dioptres(d, dpt, LENS) == pytest.approx(float(coc_sigma_px(d, 1.0 / dpt, LENS)), rel=1e-12)
            assert coc_px_per_dioptre(1.0 / dpt, LENS) * abs(1.0 / d - dpt) == pytest.approx(
                float(coc_diameter_m(d, 1.0 / dpt, LENS)) / LENS.pixel_pitch_m, rel=1e-12)
    # at infinity focus the blur of an object at d is A f / (d 4 p); past infinity it keeps growing
    at_inf = coc_sigma_px_dioptres(2.0, 0.0, LENS)
    assert at_inf == pytest.approx(LENS.aperture_m * LENS.focal_length_m / 2.0 / (4 * LENS.pixel_pitch_m), rel=1e-12)
    assert coc_sigma_px_dioptres(2.0, -0.2, LENS) > at_inf
    # continuous through 0 dioptres
    assert coc_sigma_px_dioptres(2.0, 1e-9, LENS) == pytest.approx(at_inf, rel=1e-6)


def test_sensor_distance_and_breathing() -> None:
    f = LENS.focal_length_m
    assert sensor_distance_m(0.0, LENS) == pytest.approx(f, rel=1e-15)
    assert sensor_distance_m(1.0, LENS) == pytest.approx(f * 1.0 / (1.0 - f), rel=1e-12)
    with pytest.raises(ValueError, match="focal length"):
        sensor_distance_m(1.0 / f, LENS)
    assert breathing_magnification(math.inf, LENS) == 1.0
    assert breathing_magnification(0.5, LENS) == pytest.approx(0.5 / (0.5 - f), rel=1e-12)
    assert breathing_magnification(0.5, LENS, 2.0) == pytest.approx((0.5 / (0.5 - f)) / (2.0 / (2.0 - f)), rel=1e-12)
    with pytest.raises(ValueError, match="focal length"):
        breathing_magnification(f / 2, LENS)


def test_window_rule() -> None:
    assert capped_window_radius(1.0) == psf_window_radius(1.0)
    assert capped_window_radius(30.0) == DEFAULT_MAX_RADIUS_PX
    assert capped_window_radius(30.0, None) == MAX_RADIUS_PX
    assert capped_window_radius(30.0, 5) == 5


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    aif = torch.rand(2, 3, 20, 24, generator=g)
    depth = 0.5 + 5 * torch.rand(2, 1, 20, 24, generator=g)
    focus = torch.tensor([[0.7, 1.5, 4.0], [0.9, 2.0, 5.0]])
    return aif, depth, focus


def test_rerender_stack_is_render_stack_of_the_thin_lens_blur() -> None:
    aif, depth, focus = _inputs()
    rendered, sigma = rerender_stack(aif, depth, focus, LENS, max_radius=6)
    torch.testing.assert_close(sigma, defocus_sigma_map(depth, focus, LENS), rtol=0, atol=0)
    r = min(psf_window_radius(float(sigma.max())), 6)
    torch.testing.assert_close(rendered, render_stack(aif, sigma, r), rtol=0, atol=0)
    # blur scale and pixel scale
    _, s2 = rerender_stack(aif, depth, focus, LENS, 1.08, pixel_scale=0.5)
    torch.testing.assert_close(s2, defocus_sigma_map(depth, focus, LENS, 1.08) * 0.5, rtol=0, atol=0)
    # per-frame windows: every frame rendered with the window its own blur needs (capped)
    per_frame, _ = rerender_stack(aif, depth, focus, LENS, max_radius=6, per_frame_radius=True)
    for b in range(2):
        for s in range(3):
            rs = capped_window_radius(float(sigma[b, s].max()), 6)
            expected = render_stack(aif[b:b + 1], sigma[b:b + 1, s:s + 1], rs)[0, 0]
            torch.testing.assert_close(per_frame[b, s], expected, rtol=0, atol=1e-6)
    # another renderer on the B*S frames with a fixed radius (the exported graph's node)
    calls = []

    def psf(image, sig, radius):
        calls.append((tuple(image.shape), tuple(sig.shape), radius))
        return image * 0 + radius

    out, _ = rerender_stack(aif, depth, focus, LENS, radius=3, psf=psf)
    assert calls == [((6, 3, 20, 24), (6, 1, 20, 24), 3)] and out.shape == (2, 3, 3, 20, 24) and float(out.max()) == 3


def test_rerender_stack_is_differentiable() -> None:
    aif, depth, focus = _inputs(1)
    depth.requires_grad_(True)
    aif.requires_grad_(True)
    rendered, _ = rerender_stack(aif, depth, focus, LENS, max_radius=5)
    rendered.square().mean().backward()
    assert depth.grad is not None and float(depth.grad.abs().max()) > 0 and aif.grad is not None


def test_runtime_registry(monkeypatch) -> None:
    import model.runners as runners

    monkeypatch.setattr(runners, "_FACTORIES", dict(runners._FACTORIES))
    monkeypatch.setattr(runners, "_FALLBACK_ERRORS", list(runners._FALLBACK_ERRORS))
    monkeypatch.setattr(runners, "_plugins_loaded", True)  # no entry points: only what this test registers
    runners._FACTORIES.pop("onnxruntime", None)
    with pytest.raises(ImportError, match="not installed"):
        runners.create_runner("onnxruntime", Path("m.onnx"))
    seen = []

    class Fake:
        name, focus_m, working_range_m = "fake", [1.0, 2.0], (0.4, 5.0)
        lens = LENS

        def predict(self, images, focus_m):  # pragma: no cover - not called
            raise AssertionError

    class Refused(Exception):
        pass

    runners.register_runtime("onnxruntime", lambda model, device, conf: seen.append((model, device, conf)) or Fake(),
                             fallback_errors=(Refused,))
    r = runners.create_runner("onnxruntime", Path("m.onnx"), device="cpu", with_confidence=False)
    assert isinstance(r, Fake) and seen == [(Path("m.onnx"), "cpu", False)]
    assert Refused in runners._fallback_errors()
    assert runners.working_range_of(r) == (0.4, 5.0)
    with pytest.raises(ValueError, match="cannot register"):
        runners.register_runtime("auto", lambda *a: Fake())
    with pytest.raises(ValueError, match="cannot register"):
        runners.register_runtime("openvino", lambda *a: Fake())


def test_the_export_plugin_is_found_through_the_entry_point() -> None:
    import subprocess
    import sys

    code = ("import sys, model.runners as r; names = r.registered_runtimes(); "
            "print(names, 'export.runtime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('torch', 'onnxruntime', 'tensorrt') False"
