"""Synthetic calibration captures: the printed chart seen through a known lens.

Everything a real module does that the fit relies on is rendered here, independently of the fitter's
code, with the project's one optics (the same functions the simulated camera of ``device`` and the model
use):

- **focus breathing**: the sensor sits at ``s = f d_f / (d_f - f)`` behind the lens for focus distance
  ``d_f = 1 / (a v + b)`` (``v`` the raw control value, ``a, b`` the true focus mapping;
  :func:`model.optics.sensor_distance_m`); the chart at distance ``D`` is imaged at ``s / (D p)`` pixels
  per metre (chief ray through the lens centre), so the image scale changes with the focus setting;
- **defocus**: a uniform blur per frame (the chart is a fronto-parallel plane), a Gaussian of standard
  deviation ``c / (4 p)`` with ``c`` the circle of confusion of ``model.optics``
  (:func:`model.optics.coc_sigma_px_dioptres`, valid past infinity focus), or the uniform disc itself
  (``psf="disc"``, :func:`model.synth.layered.disc_kernel`), plus an intrinsic lens blur added in quadrature;
- pixel area integration (supersampling), vignetting, shot and read noise in linear light, sRGB
  encoding and 8-bit quantisation.

Every frame comes from the simulated cameras' one frame pipeline (:func:`model.synth.frame.render_frame`,
the same one as ``device``'s simulated camera), with the chart as its scene (:class:`ChartScene`: the
chart's optics, drawn at the image scale of the focus); breathing's scale, vignetting and the sensor
(:meth:`SimOptions.sensor`) are the pipeline's stages.

:class:`ChartSimCamera` wraps this as a camera (the ``chart-sim`` kind of the wizard) with a
slew-limited focus actuator, so settle-time measurement has something real to measure.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from calibration.camera_protocol import SIM_KIND, Frame
from calibration.chart import ChartSpec, default_chart, rasterize_page
from model.lens import FocusControl, LensProfile
from model.optics import coc_sigma_px_dioptres
from model.optics import sensor_distance_m as _sensor_distance_at_dioptres
from model.synth.frame import SceneObject, Sensor, render_frame, vignette
from model.synth.layered import disc_kernel
from model.synth.noise import SensorNoise

__all__ = [
    "SimOptions",
    "ChartPose",
    "default_sim_lens",
    "sensor_distance_m",
    "image_scale_px_per_m",
    "defocus_sigma_px",
    "render_chart_frame",
    "render_chart_linear",
    "finish_frame",
    "render_sweep",
    "ChartScene",
    "ChartSimCamera",
    "make_synthetic_session",
    "chart_scene",
]


@dataclass(frozen=True)
class SimOptions:
    """How a synthetic frame is rendered.

    Attributes:
        intrinsic_blur_px: the lens's blur at best focus (Gaussian sigma, pixels), added in quadrature.
        psf: ``"gauss"`` (the project's moment-matched Gaussian) or ``"disc"`` (the uniform disc).
        white: linear level of the white paper at the image centre (> 1 clips: over-exposure).
        ink: reflectance of the black squares relative to the paper.
        background: linear level of what surrounds the page.
        vignetting: fractional fall-off of the light at the image corners.
        read_noise: standard deviation of additive noise, linear units.
        shot_noise: variance of signal-dependent noise per unit linear signal.
        supersample: pixel area integration by ``n x n`` samples per pixel.
        bit_depth: 8 or 16 (the frames are quantised to it).
    """

    intrinsic_blur_px: float = 0.5
    psf: str = "gauss"
    white: float = 0.75
    ink: float = 0.05
    background: float = 0.25
    vignetting: float = 0.15
    read_noise: float = 0.002
    shot_noise: float = 4e-5
    supersample: int = 3
    bit_depth: int = 8

    def __post_init__(self) -> None:
        if self.psf not in ("gauss", "disc"):
            raise ValueError(f"psf must be 'gauss' or 'disc', got {self.psf!r}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        if self.supersample < 1:
            raise ValueError("supersample must be >= 1")

    def sensor(self) -> Sensor:
        """The sensor stage of the frame pipeline: noise in linear light, sRGB encoding, ``bit_depth`` bits."""
        return Sensor(SensorNoise(shot_gain=self.shot_noise, read_std=self.read_noise, bits=self.bit_depth), "srgb")


@dataclass(frozen=True)
class ChartPose:
    """Where the chart is: ``distance_m`` from the lens along the optical axis (the chart faces the
    camera), its centre ``offset_m`` (x right, y down) off the axis, turned by ``roll_deg`` in its plane."""

    distance_m: float
    offset_m: tuple[float, float] = (0.0, 0.0)
    roll_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.distance_m, (int, float)) and math.isfinite(self.distance_m) and self.distance_m > 0):
            raise ValueError(f"distance_m must be a positive number of metres, got {self.distance_m!r}")


def default_sim_lens(image_size: tuple[int, int] = (640, 360)) -> LensProfile:
    """A Camera-Module-3-like module (4.74 mm, f/1.8, 1.4 um pixels at 4608 x 2592) at ``image_size``,
    whose raw control (0-10, nominally dioptres) is off the true dioptres by a few per cent."""
    w, _ = image_size
    return LensProfile(
        focal_length_m=4.74e-3,
        f_number=1.8,
        pixel_pitch_m=1.4e-6 * 4608 / w,
        name="sim-camera-module-3",
        image_size=(int(image_size[0]), int(image_size[1])),
        focus_control=FocusControl(a=0.93, b=0.15),
    )


def _dioptres(lens: LensProfile, control: float) -> float:
    fc = lens.focus_control or FocusControl()
    return fc.dioptres(control)


def sensor_distance_m(lens: LensProfile, control: float) -> float:
    """Lens-to-sensor distance ``s`` for focus control ``control``: ``s = f d_f / (d_f - f)``, in the
    dioptre form ``1 / s = 1 / f - 1 / d_f`` (valid through infinity focus)."""
    try:
        return _sensor_distance_at_dioptres(_dioptres(lens, control), lens)
    except ValueError:
        raise ValueError(f"control {control}: focus nearer than the focal length") from None


def image_scale_px_per_m(lens: LensProfile, control: float, distance_m: float) -> float:
    """Image scale of a fronto-parallel object at ``distance_m``: ``s / (D p)`` pixels per metre."""
    return sensor_distance_m(lens, control) / (distance_m * lens.pixel_pitch_m)


def defocus_sigma_px(lens: LensProfile, control: float, distance_m: float) -> float:
    """Defocus blur (moment-matched Gaussian sigma, pixels) of an object at ``distance_m``:
    :func:`model.optics.coc_sigma_px_dioptres` at the true focus of ``control`` (valid past infinity focus)."""
    return coc_sigma_px_dioptres(float(distance_m), _dioptres(lens, control), lens)


# ----------------------------------------------------------------------------- rendering


class _PageCache:
    """Page rasters at a few resolutions (each frame samples the one just finer than it needs)."""

    def __init__(self, spec: ChartSpec) -> None:
        self.spec = spec
        self._cache: dict[int, tuple[float, np.ndarray]] = {}

    def get(self, px_per_m_needed: float) -> tuple[float, np.ndarray]:
        step = 1.25
        level = int(math.ceil(math.log(max(px_per_m_needed, 500.0)) / math.log(step)))
        if level not in self._cache:
            rpx = step**level
            self._cache[level] = (rpx, rasterize_page(self.spec, rpx, supersample=3))
            if len(self._cache) > 6:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[level]


def _chart_irradiance(
    spec: ChartSpec,
    lens: LensProfile,
    focus_dpt: float,
    sensor_m: float,
    pose: ChartPose,
    image_size: tuple[int, int] | None,
    options: SimOptions,
    cache: Any,
    defocus: bool = True,
) -> np.ndarray:
    """The chart's optics (the frame pipeline's optics stage, without vignetting): linear irradiance ``(H, W)``
    float32 through ``lens`` focused at ``focus_dpt`` dioptres, the sensor ``sensor_m`` behind the lens (image
    scale ``s / (D p)``)."""
    import cv2

    if image_size is None:
        if lens.image_size is None:
            raise ValueError("image_size is needed (the lens has none)")
        image_size = lens.image_size
    w, h = int(image_size[0]), int(image_size[1])
    k = sensor_m / (pose.distance_m * lens.pixel_pitch_m)
    sigma_def = coc_sigma_px_dioptres(float(pose.distance_m), focus_dpt, lens) if defocus else 0.0
    ss = int(options.supersample)
    page = cache if isinstance(cache, _PageCache) and cache.spec == spec else _PageCache(spec)
    rpx, raster = page.get(k * ss)
    pw, ph = spec.paper_size_m
    # fine-grid pixel (x', y') (centres at integers) <-> camera coords x = (x' + 0.5) / ss - 0.5;
    # chart metres X = R^T ((x - c) / k - o); raster u = (X + pw/2) * rpx - 0.5
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    t = math.radians(pose.roll_deg)
    rt = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])  # R^T
    ox, oy = pose.offset_m
    mat = rt / (k * ss) * rpx
    off = rt @ np.array([(0.5 / ss - 0.5 - cx) / k - ox, (0.5 / ss - 0.5 - cy) / k - oy]) * rpx
    off = off + np.array([pw / 2 * rpx - 0.5, ph / 2 * rpx - 0.5])
    m = np.hstack([mat, off[:, None]]).astype(np.float64)
    # the page as radiance relative to white paper; around the page, the background
    src = (options.ink + (1.0 - options.ink) * raster).astype(np.float32)
    bg = float(options.background) / max(float(options.white), 1e-6)
    fine = cv2.warpAffine(src, m, (w * ss, h * ss), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=bg)
    fine = options.white * fine
    # optics on the fine grid (continuous-domain blur, then the pixel's area): defocus and the
    # intrinsic blur, in linear light
    if options.psf == "disc":
        radius = 2.0 * sigma_def * ss  # c / (2 p) = 2 sigma, in fine pixels
        if radius > 0.5:
            fine = cv2.filter2D(fine, -1, disc_kernel(2.0 * radius), borderType=cv2.BORDER_REPLICATE)
        blur = options.intrinsic_blur_px
    else:
        blur = math.hypot(sigma_def, options.intrinsic_blur_px)
    if blur * ss > 0.05:
        sf = blur * ss
        ksize = 2 * int(math.ceil(4.0 * sf)) + 1
        fine = cv2.GaussianBlur(fine, (ksize, ksize), sf, sigmaY=sf, borderType=cv2.BORDER_REPLICATE)
    return fine.reshape(h, ss, w, ss).mean(axis=(1, 3)).astype(np.float32)


class ChartScene:
    """The printed chart at ``pose`` as a scene of the simulated cameras' frame pipeline
    (:class:`model.synth.frame.FrameScene`, :func:`model.synth.frame.render_frame`): drawn at the image scale of
    the focus (``s / (D p)`` pixels per metre; no resampling for breathing), blurred (``options.psf`` plus the
    intrinsic blur) and integrated over the pixel's area; valid past infinity focus. Its motion is its
    :attr:`pose` (set it between frames); it has no other objects.

    Args:
        spec: the printed chart.
        pose: where the chart is.
        image_size: ``(width, height)``; defaults to the lens's ``image_size``.
        options: rendering options (the optics ones: ``psf``, ``intrinsic_blur_px``, levels, ``supersample``).
        cache: a page-raster cache to share (from an earlier scene of the same chart); optional.
        defocus: ``False`` leaves out the defocus blur.
    """

    def __init__(self, spec: ChartSpec, pose: ChartPose, image_size: tuple[int, int] | None = None,
                 options: SimOptions = SimOptions(), cache: Any = None, defocus: bool = True) -> None:
        self.spec = spec
        self.pose = pose
        self.image_size = image_size
        self.options = options
        self.defocus = defocus
        self._pages = cache if isinstance(cache, _PageCache) and cache.spec == spec else _PageCache(spec)
        self._renders: dict[Any, np.ndarray] = {}
        self._renders_lens: LensProfile | None = None

    def focus_range_dpt(self, lens: LensProfile) -> tuple[float, float]:
        return (-math.inf, math.inf)

    def render(self, lens: LensProfile, focus_dpt: float, sensor_m: float, objects: Sequence[SceneObject] = ()) -> np.ndarray:
        """Linear irradiance ``(H, W)`` float32 (see :class:`model.synth.frame.FrameScene`); the last few are cached."""
        if objects:
            raise ValueError("the chart scene has no moving objects (move the chart with its pose)")
        if lens is not self._renders_lens:
            self._renders, self._renders_lens = {}, lens
        key = (focus_dpt, sensor_m, self.pose)
        lin = self._renders.get(key)
        if lin is None:
            lin = _chart_irradiance(self.spec, lens, focus_dpt, sensor_m, self.pose, self.image_size, self.options,
                                    self._pages, self.defocus)
            self._renders = {key: lin} if len(self._renders) > 8 else {**self._renders, key: lin}
        return lin


def render_chart_linear(
    spec: ChartSpec,
    lens: LensProfile,
    control: float,
    pose: ChartPose,
    image_size: tuple[int, int] | None = None,
    options: SimOptions = SimOptions(),
    cache: Any = None,
    defocus: bool = True,
) -> np.ndarray:
    """The noise-free linear irradiance image of the chart through ``lens`` at focus control ``control``
    (arguments as :func:`render_chart_frame`; ``defocus=False`` leaves out the defocus blur), vignetting
    included: ``(H, W)`` float32."""
    s = sensor_distance_m(lens, control)
    lin = _chart_irradiance(spec, lens, _dioptres(lens, control), s, pose, image_size, options, cache, defocus)
    return vignette(lin, options.vignetting).astype(np.float32)


def finish_frame(lin: np.ndarray, options: SimOptions = SimOptions(), rng: np.random.Generator | None = None) -> np.ndarray:
    """Sensor noise (linear), sRGB encoding and quantisation: ``(H, W)`` linear -> ``(H, W, 3)`` frame
    (:meth:`SimOptions.sensor`'s :meth:`model.synth.frame.Sensor.read`)."""
    return options.sensor().read(lin, rng)


def render_chart_frame(
    spec: ChartSpec,
    lens: LensProfile,
    control: float,
    pose: ChartPose,
    image_size: tuple[int, int] | None = None,
    options: SimOptions = SimOptions(),
    rng: np.random.Generator | None = None,
    cache: Any = None,
) -> np.ndarray:
    """Render one frame of the chart through ``lens`` (the truth) at focus control ``control``.

    Args:
        spec: the printed chart.
        lens: true lens; its ``focus_control`` is the true mapping of ``control`` to dioptres and
            ``pixel_pitch_m`` refers to ``image_size``.
        control: raw focus control value of the frame.
        pose: where the chart is.
        image_size: ``(width, height)``; defaults to ``lens.image_size``.
        options: rendering options.
        rng: noise source (``None``: no noise).
        cache: a page-raster cache from an earlier call (speeds up sweeps); optional.

    Returns:
        ``(H, W, 3)`` float32 sRGB-encoded RGB in ``[0, 1]``, quantised to ``options.bit_depth``.
    """
    sensor_distance_m(lens, control)  # a focus nearer than the focal length: say so in control units
    return render_frame(ChartScene(spec, pose, image_size, options, cache), lens, _dioptres(lens, control),
                        options.sensor(), rng, vignetting=options.vignetting)


def render_sweep(
    spec: ChartSpec,
    lens: LensProfile,
    controls: Sequence[float],
    pose: ChartPose,
    image_size: tuple[int, int] | None = None,
    options: SimOptions = SimOptions(),
    seed: int | None = 0,
    progress: bool = False,
) -> np.ndarray:
    """Render a focus sweep: ``(S, H, W, 3)`` float32, one frame per control value (in the given order)."""
    rng = None if seed is None else np.random.default_rng(seed)
    cache = _PageCache(spec)
    frames = []
    it: Any = controls
    if progress:
        from tqdm import tqdm

        it = tqdm(controls, desc=f"render {pose.distance_m:.3g} m", unit="frame", leave=False, disable=None)
    for v in it:
        frames.append(render_chart_frame(spec, lens, float(v), pose, image_size, options, rng, cache))
    return np.stack(frames)


# ----------------------------------------------------------------------------- the camera


class ChartSimCamera:
    """A simulated camera looking at the printed chart (kind ``"chart-sim"``).

    Time is virtual: frames come at ``fps``; the focus actuator starts moving ``latency_frames`` after a
    command and moves at most ``slew_per_frame`` control units per frame, so frames taken right after a
    move show the lens on its way (what :func:`calibration.capture.measure_settle` measures).
    :meth:`wait_settled` waits the camera's nominal ``settle_time_s`` (too short on purpose by default,
    as an uncalibrated camera's would be).

    Args:
        lens: the true lens (default :func:`default_sim_lens`); its ``focus_control`` is the true
            mapping from the raw control value to dioptres.
        chart: the chart (default :func:`calibration.chart.default_chart`).
        distance_m, offset_m, roll_deg: the chart's pose (see :meth:`place_chart`).
        control_range: raw control range; the nominal mapping is raw value = dioptres (LensPosition-like).
        fps: frame rate.
        slew_per_frame, latency_frames: the actuator.
        settle_time_s: what :meth:`wait_settled` waits.
        options: rendering options.
        motion_px_per_frame: the chart drifts sideways by this many pixels per frame (a "moving" chart).
        seed: noise seed.
    """

    kind = SIM_KIND

    def __init__(
        self,
        lens: LensProfile | None = None,
        chart: ChartSpec | None = None,
        distance_m: float = 0.5,
        offset_m: tuple[float, float] = (0.004, -0.003),
        roll_deg: float = 1.5,
        control_range: tuple[float, float] = (0.0, 10.0),
        fps: float = 30.0,
        slew_per_frame: float = 1.6,
        latency_frames: float = 0.5,
        settle_time_s: float = 0.03,
        options: SimOptions | None = None,
        motion_px_per_frame: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._lens = lens or default_sim_lens()
        if self._lens.image_size is None or self._lens.focus_control is None:
            raise ValueError("the simulated camera's lens needs image_size and focus_control (the truth)")
        self._chart = chart or default_chart()
        self._pose = ChartPose(distance_m, offset_m, roll_deg)
        lo, hi = float(control_range[0]), float(control_range[1])
        if not lo < hi:
            raise ValueError(f"control_range must be (lo, hi) with lo < hi, got {control_range}")
        self._range = (lo, hi)
        self._nominal = FocusControl(control="LensPosition", a=1.0, b=0.0)
        self.fps = float(fps)
        self.slew_per_frame = float(slew_per_frame)
        self.latency_frames = float(latency_frames)
        self.settle_time_s = float(settle_time_s)
        self.options = options or SimOptions()
        self.motion_px_per_frame = float(motion_px_per_frame)
        self._rng = np.random.default_rng(seed)
        self._cache = _PageCache(self._chart)
        self._scene = ChartScene(self._chart, self._pose, None, self.options, self._cache)
        self._now = 0.0  # virtual seconds
        self._frame = 0
        self._pos = lo  # actual lens position (control units)
        self._target = lo
        self._move_t0 = 0.0  # when the current move starts (virtual s)
        self._move_from = lo
        self._command: float | None = None
        self._closed = False

    # ------------------------------------------------------------------ what a camera offers
    @property
    def true_lens(self) -> LensProfile:
        """The truth (for tests)."""
        return self._lens

    @property
    def chart(self) -> ChartSpec:
        return self._chart

    @property
    def pose(self) -> ChartPose:
        return self._pose

    @property
    def image_size(self) -> tuple[int, int]:
        assert self._lens.image_size is not None  # noqa: S101 - checked in __init__
        return self._lens.image_size

    @property
    def control_range(self) -> tuple[float, float]:
        return self._range

    @property
    def focus_control(self) -> FocusControl:
        """The nominal mapping (raw value = dioptres)."""
        return self._nominal

    @property
    def focus_range_dioptres(self) -> tuple[float, float]:
        a, b = self._nominal.dioptres(self._range[0]), self._nominal.dioptres(self._range[1])
        return (min(a, b), max(a, b))

    @property
    def closed(self) -> bool:
        return self._closed

    def place_chart(self, distance_m: float, offset_m: tuple[float, float] | None = None, roll_deg: float | None = None) -> None:
        """Put the chart at ``distance_m`` (what a person does when the wizard asks)."""
        self._pose = ChartPose(
            float(distance_m),
            self._pose.offset_m if offset_m is None else (float(offset_m[0]), float(offset_m[1])),
            self._pose.roll_deg if roll_deg is None else float(roll_deg),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("chart-sim camera is closed")

    def set_focus_control(self, value: float) -> None:
        """Command the raw focus value (returns at once)."""
        self._check_open()
        v = float(value)
        lo, hi = self._range
        if not math.isfinite(v) or v < lo - 1e-9 or v > hi + 1e-9:
            raise ValueError(f"focus control value {value!r} is outside {lo:g}..{hi:g}")
        v = min(max(v, lo), hi)
        self._move_from = self._position_at(self._now)
        self._move_t0 = self._now + self.latency_frames / self.fps
        self._target = v
        self._command = v

    def set_focus(self, dioptres: float) -> None:
        """Command focus in nominal dioptres."""
        lo, hi = self.focus_range_dioptres
        if not lo - 1e-9 <= float(dioptres) <= hi + 1e-9:
            raise ValueError(f"focus {dioptres} dioptres is outside {lo:g}..{hi:g}")
        self.set_focus_control((float(dioptres) - self._nominal.b) / self._nominal.a)

    def _position_at(self, t: float) -> float:
        if t <= self._move_t0:
            return self._move_from
        travel = (t - self._move_t0) * self.slew_per_frame * self.fps
        d = self._target - self._move_from
        return self._target if abs(d) <= travel else self._move_from + math.copysign(travel, d)

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Wait the nominal settle time (virtual)."""
        self._check_open()
        self._now += self.settle_time_s

    def lock_exposure(self) -> dict[str, Any]:
        return {"exposure": "fixed (simulated)"}

    def capture(self) -> Frame:
        """The next frame: exposed at the next frame boundary, showing the lens where it is then."""
        self._check_open()
        period = 1.0 / self.fps
        start = math.ceil(self._now / period - 1e-9) * period
        pos = self._position_at(start)
        pose = self._pose
        if self.motion_px_per_frame:
            k = image_scale_px_per_m(self._lens, pos, pose.distance_m)
            shift = self.motion_px_per_frame * self._frame / k
            pose = replace(pose, offset_m=(pose.offset_m[0] + shift, pose.offset_m[1]))
        if self._scene.options is not self.options:  # options replaced since: a scene that renders with them
            self._scene = ChartScene(self._chart, pose, None, self.options, self._cache)
        self._scene.pose = pose
        img = render_frame(self._scene, self._lens, _dioptres(self._lens, pos), self.options.sensor(), self._rng,
                           vignetting=self.options.vignetting)
        self._now = start + period
        meta: dict[str, Any] = {
            "camera": self.kind,
            "frame_index": self._frame,
            "focus_control": None if self._command is None else float(self._command),
            "focus_dioptres": None if self._command is None else self._nominal.dioptres(self._command),
            "timestamp_ns": int(round(start * 1e9)),
            "host_time_ns": int(round(self._now * 1e9)),
        }
        self._frame += 1
        return Frame(image=img, metadata=meta)

    def describe(self) -> dict[str, Any]:
        return {
            "camera": self.kind,
            "image_size": list(self.image_size),
            "control": self._nominal.control,
            "control_range": list(self._range),
            "fps": self.fps,
        }

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "ChartSimCamera":
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def make_synthetic_session(
    out_dir: "str | os.PathLike[str]",
    lens: LensProfile,
    distances_m: Sequence[float],
    controls: Sequence[float],
    chart: ChartSpec | None = None,
    options: SimOptions = SimOptions(),
    guess: LensProfile | None = None,
    poses: Sequence[ChartPose] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> "os.PathLike[str]":
    """Render and write a whole calibration session (one sweep per distance) through the true ``lens``.

    ``session.json`` records the truth under ``"synthetic"`` so that a fit can be scored. ``poses``
    (one per distance) overrides the default small offset and roll of the chart.

    Returns:
        The session folder.
    """
    from pathlib import Path

    from calibration.session import save_sweep, update_session_info, write_session_chart

    chart = chart or default_chart()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_session_chart(out, chart)
    rng = np.random.default_rng(seed)
    for i, d in enumerate(distances_m):
        pose = poses[i] if poses is not None else ChartPose(float(d), (0.003 * (i - 1), -0.002 * i), 1.0 + 0.7 * i)
        imgs = render_sweep(chart, lens, controls, pose, None, options, seed=int(rng.integers(1 << 31)), progress=progress)
        save_sweep(out, imgs, controls, float(d), guess=guess, capture={"camera": "synthetic", "true_distance_m": pose.distance_m})
    update_session_info(
        out,
        camera={"camera": "synthetic"},
        synthetic={
            "lens": lens.to_dict(),
            "options": {k: getattr(options, k) for k in options.__dataclass_fields__},
        },
    )
    return out


def chart_scene(
    spec: ChartSpec,
    lens: LensProfile,
    distance_m: float,
    image_size: tuple[int, int] | None = None,
    offset_m: tuple[float, float] = (0.004, -0.003),
    roll_deg: float = 1.5,
    white: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """The chart at ``distance_m`` as a scene for ``device``'s simulated camera: ``(aif (H, W, 3) float32
    linear, depth (H, W) float32 metres)``.

    The all-in-focus image is drawn at the image scale of focus at infinity, ``f / (D p)`` pixels per
    metre (the camera magnifies it by ``s / f`` for focus breathing), without blur or noise.
    """
    sharp = replace(lens, focus_control=FocusControl(a=0.0, b=0.0))  # 0 dioptres: s = f
    opts = SimOptions(intrinsic_blur_px=0.0, white=white, vignetting=0.0, read_noise=0.0, shot_noise=0.0)
    lin = render_chart_linear(spec, sharp, 0.0, ChartPose(float(distance_m), offset_m, roll_deg), image_size, opts, defocus=False)
    aif = np.repeat(np.clip(lin, 0.0, 1.0)[:, :, None], 3, axis=2).astype(np.float32)
    return aif, np.full(lin.shape, float(distance_m), np.float32)
