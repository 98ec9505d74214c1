"""The frame pipeline of the simulated cameras: a scene, a lens and a focus setting in, one frame out.

Both simulated cameras make every frame with :func:`render_frame` (``device.cameras.simulated.SimulatedCamera``:
an all-in-focus image with metric depth and moving objects, :class:`LayeredScene`;
``calibration.simulate.ChartSimCamera``: the printed chart, ``calibration.simulate.ChartScene``), so a new
feature of a simulated camera goes in one place. The stages, in order:

1. **focus**: the focus setting in dioptres (``0`` = infinity, negative = past infinity), clamped to what the
   scene can image (:meth:`FrameScene.focus_range_dpt`).
2. **breathing**: the lens-to-sensor distance ``s`` of that focus (:func:`model.optics.sensor_distance_m`)
   sets the image scale, ``s / f`` times the scale at infinity focus (``breathing=False``: ``s = f``).
3. **optics**: the scene renders its noise-free linear irradiance with the defocus of that focus, at the scale
   of ``s`` (:meth:`FrameScene.render`; moving objects included, composited as one more layer blurred with
   the scene's own PSF).
4. **vignetting**: :func:`vignette`.
5. **sensor**: :meth:`Sensor.read` (shot and read noise, saturation, encoding, quantisation) gives the frame,
   float32 ``(H, W, 3)`` in ``[0, 1]``.

A new kind of scene implements :class:`FrameScene`; a new sensor or lens effect is a stage here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal, Optional, Protocol, Sequence

import cv2
import numpy as np

from model.lens import LensProfile
from model.optics import coc_diameter_m, sensor_distance_m
from model.synth.noise import NO_NOISE, SensorNoise

__all__ = ["FrameScene", "LayeredScene", "SceneObject", "Sensor", "render_frame", "composite_objects", "magnify",
           "vignette", "srgb_encode"]


@dataclass(frozen=True)
class SceneObject:
    """A fronto-parallel object in front of the scene, placed for one frame.

    Attributes:
        texture: ``(h, w, 3)`` float colour in ``[0, 1]`` (not premultiplied).
        mask: ``(h, w)`` float coverage in ``[0, 1]``.
        depth_m: its distance, metres.
        x0, y0: where its top-left pixel lies in the frame (before breathing), pixels; may be off the frame.
    """

    texture: np.ndarray
    mask: np.ndarray
    depth_m: float
    x0: int
    y0: int


class FrameScene(Protocol):
    """What a simulated camera looks at (the optics stage of :func:`render_frame`)."""

    def focus_range_dpt(self, lens: LensProfile) -> tuple[float, float]:
        """``(lo, hi)`` dioptres this scene can be rendered at (the focus is clamped to it)."""
        ...

    def render(self, lens: LensProfile, focus_dpt: float, sensor_m: float, objects: Sequence[SceneObject] = ()) -> np.ndarray:
        """Noise-free linear irradiance, float32 ``(H, W)`` or ``(H, W, C)``: the scene through ``lens``
        focused at ``focus_dpt`` dioptres, imaged at the scale of a sensor ``sensor_m`` metres behind the lens
        (``s / f`` times the scene's scale at infinity focus, about the image centre), with ``objects``."""
        ...


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve of linear ``x`` (clipped to ``[0, 1]`` first); same shape and float type."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


@dataclass(frozen=True)
class Sensor:
    """The sensor and its output: noise in linear light, saturation, encoding and quantisation.

    Attributes:
        noise: shot and read noise and the bit depth (:class:`model.synth.noise.SensorNoise`).
        encoding: ``"linear"``: the irradiance saturates at 1, then gets the noise, is clipped to ``[0, 1]``
            and quantised (:meth:`SensorNoise.apply`, the evaluation renderer's sensor; the device's simulated
            camera). ``"srgb"``: the noise is added to the unsaturated irradiance (over-exposed white stays
            white), then sRGB encoding (:func:`srgb_encode`, which saturates) and quantisation (the chart
            simulator; its normal deviates are drawn in float64, the others' in float32).
    """

    noise: SensorNoise = NO_NOISE
    encoding: Literal["linear", "srgb"] = "linear"

    def __post_init__(self) -> None:
        if self.encoding not in ("linear", "srgb"):
            raise ValueError(f"encoding must be 'linear' or 'srgb', got {self.encoding!r}")

    def read(self, irradiance: np.ndarray, rng: Optional[np.random.Generator]) -> np.ndarray:
        """The frame of linear ``irradiance`` (``(H, W)`` grey or ``(H, W, 3)``): float32 ``(H, W, 3)`` in
        ``[0, 1]``. ``rng``: the noise source; ``None`` adds no noise (saturation and quantisation still apply)."""
        noise = self.noise
        if rng is None:
            noise = replace(noise, shot_gain=0.0, read_std=0.0)
        draws = noise.shot_gain > 0 or noise.read_std > 0  # rng is not None when it draws
        if self.encoding == "linear":
            if noise.is_zero:
                out = np.clip(irradiance, 0, 1).astype(np.float32)
            else:
                out = noise.apply(irradiance, rng)  # type: ignore[arg-type]  # rng is only used when it draws
        else:
            lin = irradiance
            if draws and rng is not None:
                var = noise.read_std**2 + noise.shot_gain * np.clip(lin, 0, None)
                lin = lin + rng.standard_normal(lin.shape).astype(np.float32) * np.sqrt(var).astype(np.float32)
            out = srgb_encode(lin)
            if noise.bits is not None:
                top = float(2**noise.bits - 1)
                out = np.round(out * top) / top
            out = out.astype(np.float32)
        if out.ndim == 2:
            out = np.repeat(out[:, :, None], 3, axis=2)
        return out


def vignette(irradiance: np.ndarray, strength: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Irradiance falling off towards the corners: times ``1 - strength * r^2``, ``r`` the distance from the
    image centre relative to the corner's. ``(H, W)`` or ``(H, W, C)``; ``strength = 0`` returns the input.

    ``centre``: ``(x, y)`` pixels of the optical axis when it is not the image centre (a crop of a larger
    frame); ``r`` is then measured from it, still relative to the image's centre-to-corner distance, and
    clipped at 1."""
    if not strength:
        return irradiance
    h, w = irradiance.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ax, ay = (cx, cy) if centre is None else (float(centre[0]), float(centre[1]))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - ax) ** 2 + (yy - ay) ** 2) / (cx * cx + cy * cy)
    if centre is not None:
        r2 = np.minimum(r2, 1.0)
    fall = 1.0 - strength * r2
    return irradiance * (fall if irradiance.ndim == 2 else fall[:, :, None])


def magnify(image: np.ndarray, m: float) -> np.ndarray:
    """``image`` (``(H, W)`` or ``(H, W, C)``) magnified ``m`` times about its centre (bilinear, reflected at
    the border); unchanged when ``|m - 1| < 1e-6``."""
    if abs(m - 1.0) < 1e-6:
        return image
    h, w = image.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    r = 1.0 / m  # output pixel x samples the unmagnified image at c + (x - c) / m
    mat = np.array([[r, 0.0, cx * (1 - r)], [0.0, r, cy * (1 - r)]], np.float32)
    return cv2.warpAffine(image, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)


def composite_objects(image: np.ndarray, objects: Sequence[SceneObject], lens: LensProfile, focus_m: float) -> np.ndarray:
    """``objects`` as more layers over ``image`` (``(H, W, 3)`` linear, rendered by the layered renderer):
    premultiplied colour and coverage blurred with the same uniform disc as the scene's layers (diameter
    ``model.optics.coc_diameter_m / p``, :func:`model.synth.layered.disc_blur`), composited with *over*."""
    if not objects:
        return image
    from model.synth.layered import disc_blur, disc_kernel

    img = image.copy()
    h, w = img.shape[:2]
    for ob in objects:
        diam = float(coc_diameter_m(ob.depth_m, focus_m, lens)) / lens.pixel_pitch_m
        pad = disc_kernel(diam).shape[0] // 2 + 1
        rgba = np.pad(np.dstack([ob.texture * ob.mask[:, :, None], ob.mask]), ((pad, pad), (pad, pad), (0, 0)))
        rgba = disc_blur(rgba, diam)
        tex, m = rgba[:, :, :3], rgba[:, :, 3]
        xs, ys = ob.x0 - pad, ob.y0 - pad
        xa, ya, xb, yb = max(0, xs), max(0, ys), min(w, xs + m.shape[1]), min(h, ys + m.shape[0])
        if xa >= xb or ya >= yb:
            continue
        mm = m[ya - ys : yb - ys, xa - xs : xb - xs, None]
        tt = tex[ya - ys : yb - ys, xa - xs : xb - xs]
        img[ya:yb, xa:xb] = img[ya:yb, xa:xb] * (1.0 - mm) + tt
    return img


class LayeredScene:
    """An all-in-focus image with metric depth as a :class:`FrameScene`: the layered uniform-disc renderer
    (:func:`model.synth.layered.render_stack_layered`), objects composited over it with the same disc, then
    magnified for breathing (:func:`magnify`).

    The renderer works in metres: focus at and past infinity renders at infinity (1e6 m), so the focus range is
    ``0 .. 1 / (1.5 f)`` dioptres. Renders of the static scene are cached per 1e-4 dioptre (``cache_size`` of
    them; thread-safe).

    Args:
        aif: ``(H, W, 3)`` float in ``[0, 1]``, at the frame size (pixels of the lens's pitch).
        depth: ``(H, W)`` metres, finite, beyond twice the focal length.
    """

    def __init__(self, aif: np.ndarray, depth: np.ndarray, cache_size: int = 32) -> None:
        self.aif = aif
        self.depth = depth
        self._cache_size = int(cache_size)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_lens: Optional[LensProfile] = None
        self._lock = threading.Lock()

    def focus_range_dpt(self, lens: LensProfile) -> tuple[float, float]:
        return (0.0, 1.0 / (1.5 * lens.focal_length_m))

    @staticmethod
    def focus_m(focus_dpt: float, lens: LensProfile) -> float:
        """The focus distance the renderer is given for ``focus_dpt``, metres (1e6 at and past infinity)."""
        focus_m = 1.0 / focus_dpt if focus_dpt > 1e-6 else 1e6
        return max(focus_m, 1.5 * lens.focal_length_m)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _defocused(self, lens: LensProfile, focus_dpt: float) -> np.ndarray:
        from model.synth.layered import render_stack_layered

        key = int(round(focus_dpt * 1e4))
        with self._lock:
            if self._cache_lens is not lens:
                self._cache.clear()
                self._cache_lens = lens
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        img = render_stack_layered(self.aif, self.depth, [self.focus_m(focus_dpt, lens)], lens)[0]
        with self._lock:
            self._cache[key] = img
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return img

    def render(self, lens: LensProfile, focus_dpt: float, sensor_m: float, objects: Sequence[SceneObject] = ()) -> np.ndarray:
        img = self._defocused(lens, focus_dpt)
        img = composite_objects(img, objects, lens, self.focus_m(focus_dpt, lens))
        return magnify(img, sensor_m / sensor_distance_m(0.0, lens))


def render_frame(
    scene: FrameScene,
    lens: LensProfile,
    focus_dpt: float,
    sensor: Sensor = Sensor(),
    rng: Optional[np.random.Generator] = None,
    objects: Sequence[SceneObject] = (),
    breathing: bool = True,
    vignetting: float = 0.0,
) -> np.ndarray:
    """One frame of a simulated camera (the stages are listed in the module docstring).

    Args:
        scene: what the camera looks at.
        lens: the optics actually rendered; ``pixel_pitch_m`` is the pitch of the frame's pixels.
        focus_dpt: where the lens is, dioptres (0 = infinity focus, negative = past infinity).
        sensor: noise, encoding and quantisation.
        rng: the noise source; ``None`` for no noise.
        objects: objects in front of the scene for this frame (scenes that have no layers refuse them).
        breathing: image scale following the focus (``s / f``); ``False`` keeps the scale of infinity focus.
        vignetting: fractional fall-off of the irradiance at the image corners.

    Returns:
        float32 ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: a focus nearer than the focal length.
    """
    lo, hi = scene.focus_range_dpt(lens)
    dpt = min(max(float(focus_dpt), lo), hi)
    s = sensor_distance_m(dpt if breathing else 0.0, lens)
    lin = scene.render(lens, dpt, s, objects)
    return sensor.read(vignette(lin, vignetting), rng)
