"""A simulated camera with motorised focus: scenes rendered through the lens profile.

Each frame comes from the simulated cameras' one frame pipeline (:func:`model.synth.frame.render_frame`): the
scene (an all-in-focus image and its metric depth, :class:`model.synth.frame.LayeredScene`) rendered at the
lens's *actual* focus position with the layered uniform-disc defocus model
(:func:`model.synth.layered.render_stack_layered`, thin-lens circle of confusion from :mod:`model.optics`),
with optional moving objects (blurred with the same uniform disc and composited over the scene as one more
layer), magnified for focus breathing (``s(d_f) / f`` about the image centre), and sensor noise and
quantisation (:class:`model.synth.noise.SensorNoise`). This module is the camera around it: the lens's
motion, the clock, the scene and the objects' paths. The lens moves like a voice-coil motor: slew-limited
(``slew_dpt_per_s``), then ringing down over ``settle_time_s``; a frame exposed while it moves shows an
intermediate focus, exactly the failure a real sweep must avoid by waiting.

Time is either real (frames arrive at ``fps``, sleeps are real) or virtual (``realtime=False``: the
clock jumps, tests run at full speed with the same timing logic).

The true optics may differ from the profile the caller believes in (``true_lens``, ``true_focus_control``),
so calibration can be tested against a known truth: ``set_focus`` maps dioptres to the control value with
the *profile's* mapping, while the rendered focus follows the *true* mapping.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from device.cameras.base import Camera
from device.errors import CameraError
from model.lens import FocusControl, LensProfile
from model.optics import breathing_magnification
from model.synth.frame import LayeredScene, SceneObject, Sensor, render_frame
from model.synth.noise import NO_NOISE, SensorNoise

__all__ = ["SimConfig", "SimulatedCamera", "default_lens", "load_scene", "magnification"]

log = logging.getLogger(__name__)

def default_lens() -> LensProfile:
    """The lens profile of the shipped default model (:func:`model.checkpoint.default_lens_path`)."""
    from model.checkpoint import default_lens_path

    return LensProfile.load(default_lens_path())


magnification: Callable[..., float] = breathing_magnification
"""Image scale at focus ``focus_m`` relative to focus at infinity (``magnification(focus_m, lens)``):
:func:`model.optics.breathing_magnification`, kept under this name for callers of this module."""


@dataclass
class SimConfig:
    """Options of the simulated camera (``open_camera("sim", **opts)`` accepts these keys only).

    Attributes:
        size: ``(width, height)`` of frames; ``None`` takes the lens's ``image_size`` or 320x240.
        fps: frame rate of the simulated sensor, frames per second.
        exposure_time_us: exposure of each frame (at most one frame period), microseconds.
        slew_dpt_per_s: lens speed, dioptres per second.
        settle_time_s: ringing time after arrival (``None``: the profile's ``settle_time_s`` or 0.02 s).
        control_range: raw control range; ``None`` maps 0 dioptres .. ``min(15, 0.25 / f)`` dioptres.
        scene: ``"procedural"`` (``model.synth.scenes.random_scene``), ``"motorcycle"`` (Middlebury
            Motorcycle from scikit-image), a ``focal-stack/1`` folder with ``aif`` and ``depth``, or a
            ``NAME_rgb.png`` file with ``NAME_depth.npy`` (metres) beside it.
        scene_range_m: ``(near, far)`` depth range of procedural scenes, metres.
        moving_objects: number of textured discs moving across the scene (in front of it).
        object_speed_px_s: their speed, pixels per second.
        breathing: magnify frames with focus as a real lens does.
        noise: ``(shot_gain, read_std)`` of :class:`SensorNoise`; ``(0, 0)`` for none.
        bits: quantise frames to this many bits (``None``: no quantisation).
        seed: random seed for the scene, objects and noise.
        realtime: real sleeps at ``fps``; ``False`` runs on a virtual clock (tests, benchmarks).
        fail_after: raise :class:`CameraError` ("disconnected") at this many captures (fault injection).
    """

    size: tuple[int, int] | None = None
    fps: float = 60.0
    exposure_time_us: float = 8000.0
    slew_dpt_per_s: float = 120.0
    settle_time_s: float | None = None
    control_range: tuple[float, float] | None = None
    scene: str = "procedural"
    scene_range_m: tuple[float, float] = (0.7, 10.0)
    moving_objects: int = 0
    object_speed_px_s: float = 40.0
    breathing: bool = True
    noise: tuple[float, float] = (2e-4, 3e-3)
    bits: int | None = 10
    seed: int = 0
    realtime: bool = True
    fail_after: int | None = None

    @classmethod
    def from_opts(cls, opts: dict[str, Any]) -> "SimConfig":
        """Build from keyword options; unknown keys raise ``TypeError`` naming the known ones."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(opts) - known)
        if bad:
            raise TypeError(f"unknown simulated-camera option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        cfg = cls(**opts)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.size is not None:
            w, h = self.size
            if int(w) < 8 or int(h) < 8:
                raise ValueError(f"size must be at least 8x8 pixels, got {w}x{h}")
            self.size = (int(w), int(h))
        for key in ("fps", "slew_dpt_per_s", "exposure_time_us"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{key} must be a positive number, got {v!r}")
        if self.exposure_time_us > 1e6 / self.fps:
            raise ValueError(f"exposure_time_us {self.exposure_time_us} is longer than a frame at {self.fps} fps")
        near, far = self.scene_range_m
        if not 0 < near < far:
            raise ValueError(f"scene_range_m must be (near, far) with 0 < near < far, got {self.scene_range_m}")
        if int(self.moving_objects) < 0:
            raise ValueError(f"moving_objects must be >= 0, got {self.moving_objects}")
        if self.fail_after is not None and int(self.fail_after) < 0:
            raise ValueError(f"fail_after must be >= 0, got {self.fail_after}")


class _Clock:
    """Real (``time.monotonic_ns``) or virtual time, nanoseconds."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self._t = time.monotonic_ns()

    def now(self) -> int:
        return time.monotonic_ns() if self.realtime else self._t

    def sleep_until(self, t_ns: int) -> None:
        if self.realtime:
            dt = (t_ns - time.monotonic_ns()) / 1e9
            if dt > 0:
                time.sleep(dt)
        else:
            self._t = max(self._t, int(t_ns))


@dataclass
class _Sprite:
    texture: np.ndarray  # (2r+1, 2r+1, 3)
    mask: np.ndarray  # (2r+1, 2r+1) float
    depth_m: float
    pos: np.ndarray  # (x, y) centre, pixels at t0
    vel: np.ndarray  # px / s


def load_scene(spec: str, size: tuple[int, int], scene_range_m: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Load or draw a scene: ``(aif (H, W, 3) float32, depth (H, W) float32 metres)`` at ``size = (w, h)``.

    See :class:`SimConfig` ``scene`` for the accepted specs. Unknown depth (0, NaN, inf) is filled with
    the nearest known depth. Raises ``ValueError`` for an unusable spec.
    """
    w, h = size
    if spec == "procedural":
        from model.synth.scenes import random_scene

        return random_scene(rng, h, w, scene_range_m[0], scene_range_m[1])
    if spec == "motorcycle":
        from model.synth.rgbd import motorcycle_rgbd

        aif, depth = motorcycle_rgbd()  # NaN where the disparity is unknown; filled below
    else:
        p = Path(spec)
        if p.is_dir():
            from model.formats import read_stack

            st = read_stack(p, require_focus=False)
            if st.aif is None or st.depth is None:
                raise ValueError(f"{p}: a scene folder needs both aif and depth")
            aif, depth = st.aif, st.depth
        elif p.is_file() and p.name.endswith("_rgb.png"):
            from model.formats import read_image

            dp = p.with_name(p.name[: -len("_rgb.png")] + "_depth.npy")
            if not dp.is_file():
                raise ValueError(f"{p}: expected the depth map {dp.name} (metres) beside it")
            aif = read_image(p)
            depth = np.load(dp, allow_pickle=False).astype(np.float32)
            if depth.shape != aif.shape[:2]:
                raise ValueError(f"{dp}: depth is {depth.shape}, the image is {aif.shape[:2]}")
        else:
            raise ValueError(
                f"scene {spec!r}: expected 'procedural', 'motorcycle', a focal-stack folder with aif and depth, "
                "or NAME_rgb.png with NAME_depth.npy beside it"
            )
    from model.synth.layered import fill_unknown_depth

    depth = fill_unknown_depth(np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32))
    return _resize_scene(aif, depth, size)


def _resize_scene(aif: np.ndarray, depth: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize (centre-cropping to the aspect of ``size``) an RGB-D pair to ``size = (w, h)``
    (:func:`model.synth.rgbd.crop_resize`)."""
    from model.synth.rgbd import crop_resize

    if depth.shape == (size[1], size[0]):
        return aif.astype(np.float32), depth.astype(np.float32)
    a, d = crop_resize(np.asarray(aif, np.float32), np.asarray(depth, np.float32), size)
    return a, np.asarray(d, np.float32)


class SimulatedCamera(Camera):
    """A simulated motorised-focus camera (see the module docstring).

    Args:
        lens: the lens profile the caller uses (focus mapping, settle time); ``None`` takes the shipped
            model's profile. Its ``pixel_pitch_m`` refers to its ``image_size`` and is rescaled to ``size``.
        scene: ``(aif (H, W, 3), depth (H, W) metres)`` to image, or a scene spec string (see
            :class:`SimConfig`); default ``config.scene``.
        true_lens: the optics actually rendered (default: ``lens``).
        true_focus_control: the actual control-to-dioptre mapping (default: the profile's, else identity).
        config: a :class:`SimConfig`; or pass its fields as keyword options.
    """

    kind = "sim"

    def __init__(
        self,
        lens: LensProfile | None = None,
        scene: tuple[np.ndarray, np.ndarray] | str | None = None,
        true_lens: LensProfile | None = None,
        true_focus_control: FocusControl | None = None,
        config: SimConfig | None = None,
        **opts: Any,
    ) -> None:
        if isinstance(scene, (str, os.PathLike)):  # a scene spec rather than arrays
            opts["scene"] = str(scene)
            scene = None
        if config is not None and opts:
            raise TypeError("pass either config or keyword options, not both")
        cfg = config if config is not None else SimConfig.from_opts(opts)
        cfg.validate()
        lens = lens if lens is not None else default_lens()
        size = cfg.size or lens.image_size or (320, 240)
        nominal = FocusControl(model="dioptre-linear", control="LensPosition", a=1.0, b=0.0)
        super().__init__(lens, nominal, cfg.settle_time_s, default_settle_s=0.02)
        self.config = cfg
        self._size = (int(size[0]), int(size[1]))
        self._optics = self._at_size(true_lens if true_lens is not None else lens)
        self._true_fc = true_focus_control or (lens.focus_control if lens.focus_control is not None else nominal)
        if cfg.control_range is not None:
            lo, hi = float(cfg.control_range[0]), float(cfg.control_range[1])
            if not lo < hi:
                raise ValueError(f"control_range must be (min, max) with min < max, got {cfg.control_range}")
            self._range = (lo, hi)
        else:
            top = min(15.0, 0.25 / self._optics.focal_length_m)
            fc = self.focus_control
            v0, v1 = (0.0 - fc.b) / fc.a, (top - fc.b) / fc.a
            self._range = (min(v0, v1), max(v0, v1))
        self._rng = np.random.default_rng(cfg.seed)
        self._noise = SensorNoise(float(cfg.noise[0]), float(cfg.noise[1]), cfg.bits) if (cfg.noise[0] or cfg.noise[1] or cfg.bits) else NO_NOISE
        self._sensor = Sensor(self._noise, "linear")
        self._clock = _Clock(cfg.realtime)
        self._t0 = self._clock.now()
        self._period_ns = int(round(1e9 / cfg.fps))
        self._lock = threading.RLock()
        # lens state, in true dioptres
        self._pos0 = self._true_fc.dioptres(self._range[0])  # start parked at the low end of the range
        self._target = self._pos0
        self._move_start_ns = self._t0
        self._arrive_ns = self._t0
        self._captures = 0
        self._last_exposure_start: int | None = None
        if scene is not None:
            self.set_scene(*scene)
        else:
            self.set_scene(*load_scene(cfg.scene, self._size, cfg.scene_range_m, self._rng))

    # ------------------------------------------------------------------ scene

    def _at_size(self, lens: LensProfile) -> LensProfile:
        """``lens`` for frames of the camera's size (a different aspect: the pitch follows the width)."""
        if lens.image_size is None or tuple(lens.image_size) == self._size:
            return lens
        try:
            return lens.scaled_to(self._size)
        except ValueError:
            w0 = lens.image_size[0]
            return replace(lens, pixel_pitch_m=lens.pixel_pitch_m * w0 / self._size[0], image_size=self._size)

    def set_scene(self, aif: np.ndarray, depth: np.ndarray) -> None:
        """Image a new scene: ``aif (H, W, 3)`` in [0, 1] and ``depth (H, W)`` metres (resized to the frame size).

        Raises ``ValueError`` for mismatched shapes or depths not beyond the focal length.
        """
        a = np.asarray(aif, dtype=np.float32)
        d = np.asarray(depth, dtype=np.float32)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"scene aif must be (H, W, 3), got {a.shape}")
        if d.shape != a.shape[:2]:
            raise ValueError(f"scene depth must be {a.shape[:2]}, got {d.shape}")
        valid = np.isfinite(d) & (d > 0)
        if not valid.all():
            from model.synth.layered import fill_unknown_depth

            d = fill_unknown_depth(np.where(valid, d, np.nan))
        if float(d.min()) <= 2 * self._optics.focal_length_m:
            raise ValueError(f"scene depth must be beyond twice the focal length ({2 * self._optics.focal_length_m} m), min is {d.min()}")
        a, d = _resize_scene(a, d, self._size)
        with self._lock:
            self._aif = np.clip(a, 0.0, 1.0)
            self._depth = d
            self._scene = LayeredScene(self._aif, self._depth)
            self._sprites = self._make_sprites(int(self.config.moving_objects))

    @property
    def scene(self) -> tuple[np.ndarray, np.ndarray]:
        """The static scene ``(aif, depth)`` at the frame size (before breathing; without moving objects)."""
        return self._aif, self._depth

    def _make_sprites(self, n: int) -> list[_Sprite]:
        from model.synth.textures import procedural_texture

        w, h = self._size
        near = float(self._depth.min())
        sprites = []
        for _ in range(n):
            r = max(2, int(min(w, h) * self._rng.uniform(0.08, 0.15)))
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            mask = (xx**2 + yy**2 <= r * r).astype(np.float32)
            tex = procedural_texture(self._rng, 2 * r + 1, 2 * r + 1)
            depth = float(max(2.5 * self._optics.focal_length_m, near * self._rng.uniform(0.6, 0.95)))
            pos = np.array([self._rng.uniform(r, w - r), self._rng.uniform(r, h - r)])
            ang = self._rng.uniform(0, 2 * np.pi)
            vel = float(self.config.object_speed_px_s) * np.array([math.cos(ang), math.sin(ang)])
            sprites.append(_Sprite(tex.astype(np.float32), mask, depth, pos, vel))
        return sprites

    def depth_truth(self, t_ns: int | None = None) -> np.ndarray:
        """Ground-truth depth ``(H, W)`` metres at time ``t_ns`` (moving objects included), before breathing."""
        d = self._depth.copy()
        t = self._clock.now() if t_ns is None else t_ns
        for sp, (x0, y0) in zip(self._sprites, self._sprite_positions(t)):
            self._paste(d, np.full(sp.mask.shape, sp.depth_m, np.float32), sp.mask > 0.5, x0, y0, mode="min")
        return d

    def _sprite_positions(self, t_ns: int) -> list[tuple[int, int]]:
        w, h = self._size
        out = []
        dt = (t_ns - self._t0) / 1e9
        for sp in self._sprites:
            r = sp.mask.shape[0] // 2
            p = []
            for k, span in ((0, w - 2 * r), (1, h - 2 * r)):
                x = sp.pos[k] - r + sp.vel[k] * dt
                span = max(span, 1)
                x = x % (2 * span)  # bounce between the walls
                p.append(int(round(x if x <= span else 2 * span - x)))
            out.append((p[0], p[1]))
        return out

    @staticmethod
    def _paste(dst: np.ndarray, src: np.ndarray, where: np.ndarray, x0: int, y0: int, mode: str = "set") -> None:
        h, w = dst.shape[:2]
        sh, sw = src.shape[:2]
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + sw), min(h, y0 + sh)
        if xa >= xb or ya >= yb:
            return
        s = src[ya - y0 : yb - y0, xa - x0 : xb - x0]
        m = where[ya - y0 : yb - y0, xa - x0 : xb - x0]
        view = dst[ya:yb, xa:xb]
        if mode == "min":
            view[m] = np.minimum(view[m], s[m])
        else:
            view[m] = s[m]

    # ------------------------------------------------------------------ camera interface

    @property
    def control_range(self) -> tuple[float, float]:
        return self._range

    @property
    def image_size(self) -> tuple[int, int]:
        return self._size

    @property
    def optics(self) -> LensProfile:
        """The lens actually rendered, at the frame size."""
        return self._optics

    @property
    def clock_ns(self) -> int:
        """The camera's clock (``time.monotonic_ns`` when real time, else the virtual clock), ns."""
        return self._clock.now()

    def lens_dioptres_at(self, t_ns: int) -> float:
        """Actual lens position (true dioptres) at time ``t_ns``."""
        p0, p1 = self._pos0, self._target
        if t_ns <= self._move_start_ns:
            return p0
        if t_ns < self._arrive_ns:
            frac = (t_ns - self._move_start_ns) / max(1, self._arrive_ns - self._move_start_ns)
            return p0 + (p1 - p0) * frac
        # ringing after arrival: a damped overshoot that has died down after settle_time_s
        tau = max(self.settle_time_s, 1e-6) / 5.0
        dt = (t_ns - self._arrive_ns) / 1e9
        return p1 + 0.08 * (p1 - p0) * math.exp(-dt / tau) * math.cos(2 * math.pi * dt / max(2 * tau, 1e-6))

    def _apply_focus_control(self, value: float, previous: float | None) -> None:
        with self._lock:
            now = self._clock.now()
            here = self.lens_dioptres_at(now)
            self._pos0 = here
            self._target = self._true_fc.dioptres(value)
            self._move_start_ns = now
            self._arrive_ns = now + int(abs(self._target - here) / self.config.slew_dpt_per_s * 1e9)

    def _settle_deadline_ns(self) -> int:
        return self._arrive_ns + int(self.settle_time_s * 1e9)

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Wait until the lens has arrived and stopped ringing (simulated clock)."""
        self._check_open()
        deadline = self._settle_deadline_ns()
        if timeout_s is not None:
            deadline = min(deadline, self._clock.now() + int(timeout_s * 1e9))
        self._clock.sleep_until(deadline)
        self._settled = True

    def _objects_at(self, t_ns: int) -> list[SceneObject]:
        """The moving objects placed for a frame exposed at ``t_ns``."""
        return [SceneObject(sp.texture, sp.mask, sp.depth_m, x0, y0)
                for sp, (x0, y0) in zip(self._sprites, self._sprite_positions(t_ns))]

    def _capture(self) -> tuple[np.ndarray, dict[str, Any]]:
        cfg = self.config
        if cfg.fail_after is not None and self._captures >= int(cfg.fail_after):
            raise CameraError("simulated camera disconnected (fail_after reached)")
        now = self._clock.now()
        k = max(0, -(-(now - self._t0) // self._period_ns))  # next frame start at or after now
        start = self._t0 + k * self._period_ns
        if self._last_exposure_start is not None and start <= self._last_exposure_start:
            start = self._last_exposure_start + self._period_ns
        exp_ns = int(cfg.exposure_time_us * 1000)
        self._clock.sleep_until(start + exp_ns)  # the frame is read out at the end of its exposure
        mid = start + exp_ns // 2
        true_dpt = self.lens_dioptres_at(mid)
        img = render_frame(self._scene, self._optics, true_dpt, self._sensor, self._rng, self._objects_at(mid),
                           breathing=cfg.breathing)
        self._captures += 1
        self._last_exposure_start = start
        meta: dict[str, Any] = {
            "timestamp_ns": int(start + exp_ns),
            "exposure_start_ns": int(start),
            "exposure_time_us": float(cfg.exposure_time_us),
            "analogue_gain": 1.0,
            "colour_gains": [1.0, 1.0],
            "frame_duration_us": self._period_ns / 1000.0,
            "lens_dioptres_actual": float(true_dpt),
            "settled": bool(self._settled and start >= self._settle_deadline_ns()),
        }
        return img.astype(np.float32, copy=False), meta

    def lock_exposure(self) -> dict[str, Any]:
        self._check_open()
        return {"exposure_time_us": float(self.config.exposure_time_us), "analogue_gain": 1.0, "colour_gains": [1.0, 1.0]}

    def _close(self) -> None:
        scene = getattr(self, "_scene", None)
        if scene is not None:
            scene.clear_cache()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"fps": self.config.fps, "scene": self.config.scene if isinstance(self.config.scene, str) else "custom",
                  "breathing": self.config.breathing, "moving_objects": int(self.config.moving_objects), "seed": self.config.seed})
        return d

