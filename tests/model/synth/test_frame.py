"""The simulated cameras' one frame pipeline (model.synth.frame): stages, objects blurred like the scene."""

from __future__ import annotations

import numpy as np
import pytest

from model.lens import LensProfile
from model.optics import coc_diameter_m, sensor_distance_m
from model.synth.frame import LayeredScene, SceneObject, Sensor, magnify, render_frame, srgb_encode, vignette
from model.synth.layered import render_stack_layered
from model.synth.noise import SensorNoise

LENS = LensProfile(focal_length_m=0.05, f_number=8.0, pixel_pitch_m=4e-5, image_size=(64, 48))


def _grey_scene(h: int = 48, w: int = 64, depth_m: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    return np.full((h, w, 3), 0.4, np.float32), np.full((h, w), depth_m, np.float32)


def _square(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    tex = np.random.default_rng(0).random((n, n, 3), dtype=np.float32)
    return tex, np.ones((n, n), np.float32)


def test_an_object_is_blurred_with_the_scenes_disc() -> None:
    """A textured square in front of a plain background: as a moving object over the background, it looks as it
    does as a layer of the scene itself (same uniform disc), except on the inner rim where the layered
    renderer has no background behind the square to blend with."""
    aif, depth = _grey_scene()
    tex, mask = _square()
    y0, x0, n = 16, 24, tex.shape[0]
    whole_aif, whole_depth = aif.copy(), depth.copy()
    whole_aif[y0 : y0 + n, x0 : x0 + n] = tex
    whole_depth[y0 : y0 + n, x0 : x0 + n] = 1.0
    focus_dpt = 1.0 / 5.0  # background sharp, the square (1 m) blurred by a disc of several pixels
    diam = float(coc_diameter_m(1.0, 5.0, LENS)) / LENS.pixel_pitch_m
    assert 3 < diam < 10
    as_object = render_frame(LayeredScene(aif, depth), LENS, focus_dpt, objects=[SceneObject(tex, mask, 1.0, x0, y0)],
                             breathing=False)
    as_layer = render_stack_layered(whole_aif, whole_depth, [5.0], LENS)[0]
    yy, xx = np.mgrid[0:48, 0:64]
    inside = (yy >= y0) & (yy < y0 + n) & (xx >= x0) & (xx < x0 + n)
    r = int(np.ceil(diam / 2)) + 1
    deep = (yy >= y0 + r) & (yy < y0 + n - r) & (xx >= x0 + r) & (xx < x0 + n - r)
    np.testing.assert_allclose(as_object[~inside], as_layer[~inside], atol=1e-5)  # the blurred edge over the background
    np.testing.assert_allclose(as_object[deep], as_layer[deep], atol=1e-5)
    blurred = (~inside) & (np.abs(as_object - aif).max(axis=2) > 1e-3)
    assert blurred.any()  # the object's blur does reach over the background


def test_breathing_is_the_magnification_s_over_f_and_can_be_turned_off() -> None:
    aif = np.random.default_rng(1).random((48, 64, 3), dtype=np.float32)
    depth = np.full((48, 64), 3.0, np.float32)
    scene = LayeredScene(aif, depth)
    focus_dpt = 2.0
    flat = render_frame(scene, LENS, focus_dpt, breathing=False)
    breathing = render_frame(scene, LENS, focus_dpt)
    m = sensor_distance_m(focus_dpt, LENS) / LENS.focal_length_m
    assert m > 1.1
    np.testing.assert_array_equal(breathing, np.clip(magnify(flat, m), 0, 1))


def test_focus_is_clamped_to_what_the_scene_renders() -> None:
    """The layered renderer works in metres: past infinity is rendered (and scaled) as infinity."""
    scene = LayeredScene(*_grey_scene())
    assert scene.focus_range_dpt(LENS) == (0.0, pytest.approx(1.0 / (1.5 * 0.05)))
    np.testing.assert_array_equal(render_frame(scene, LENS, -0.5), render_frame(scene, LENS, 0.0))
    with pytest.raises(ValueError, match="nearer than the focal length"):
        render_frame(_AnyFocus(), LENS, 1.0 / 0.04)


class _AnyFocus:
    def focus_range_dpt(self, lens):
        return (-np.inf, np.inf)

    def render(self, lens, focus_dpt, sensor_m, objects=()):
        return np.full((4, 4), 0.5, np.float32)


def test_sensor_linear_is_sensor_noise_and_srgb_saturates_after_the_noise() -> None:
    lin = np.linspace(0.0, 1.5, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    noise = SensorNoise(1e-3, 1e-2, 8)
    np.testing.assert_array_equal(Sensor(noise).read(lin, np.random.default_rng(3)), noise.apply(lin, np.random.default_rng(3)))
    grey = np.full((8, 8), 1.6, np.float32)  # over-exposed: stays white through the noise
    out = Sensor(noise, "srgb").read(grey, np.random.default_rng(3))
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, 1.0)
    mid = np.full((3, 5), 0.2, np.float32)
    clean = Sensor(noise, "srgb").read(mid, None)  # no rng: no noise, still encoded and quantised
    np.testing.assert_array_equal(clean, np.round(srgb_encode(mid)[:, :, None].repeat(3, 2) * 255) / 255)
    with pytest.raises(ValueError, match="encoding"):
        Sensor(noise, "gamma")  # type: ignore[arg-type]


def test_vignetting_falls_off_towards_the_corners() -> None:
    img = np.ones((5, 7), np.float32)
    assert vignette(img, 0.0) is img
    v = vignette(np.ones((5, 7, 3), np.float32), 0.2)
    assert v[2, 3, 0] == pytest.approx(1.0) and v[0, 0, 0] == pytest.approx(0.8) and v[4, 6, 2] == pytest.approx(0.8)
