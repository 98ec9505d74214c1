"""Training data: focal stacks rendered on the fly, or read from your own focal-stack/1 folders.

Three sources, one item layout (PyTorch, float32):

=========== ===================== ====================================================================
key         shape                 meaning
=========== ===================== ====================================================================
images      ``(S, 3, H, W)``      the focal stack in ``[0, 1]``, nearest focus first
focus_m     ``(S,)``              focus distance of each frame, metres
depth       ``(1, H, W)``         ground-truth depth in metres, NaN where unknown (all NaN if none)
aif         ``(3, H, W)``         all-in-focus image (all NaN if none)
=========== ===================== ====================================================================

``depth`` and ``aif`` are diagnostics only (validation metrics, image logs): self-supervised training
never uses them. They are always present so that batches collate the same way for every source.

- :class:`SyntheticStacks` — procedural scenes (:func:`model.synth.scenes.random_scene`) rendered with
  the training renderer (:func:`model.render.render_stack`, the gather-form Gaussian PSF, blur from
  :func:`model.optics.coc_sigma_px`), plus sensor noise. Configured by :class:`SynthConfig`, which can also
  send a share of the batches to the layered renderer (uniform disc or generalised Gaussian PSF, occlusion),
  add residual focus breathing, and draw textures from a folder of extra photographs.
- :class:`RGBDStacks` — the same, with scenes cropped from an RGB-D folder (:mod:`model.synth.rgbd`).
- :class:`FolderStacks` — random crops of recorded ``focal-stack/1`` folders (map-style dataset);
  :class:`RandomBatches` turns it into a stream of batches.

**Batches.** A batch must hold stacks of one size S. The rendered datasets therefore yield *whole
batches* when ``SynthConfig.batch_size`` is set (``(B, S, 3, H, W)``, ``(B, S)``, ``(B, 1, H, W)``,
``(B, 3, H, W)``; S drawn once per batch) — use them with ``DataLoader(ds, batch_size=None)``. With
``batch_size=None`` they yield single items, which :func:`collate_stacks` batches when S is equal.

**Seeding.** Batch (or item) number ``i`` of epoch ``e`` is drawn from
``numpy.random.default_rng([seed, e, i])``; with ``k`` DataLoader workers, worker ``w`` makes numbers
``w, w + k, w + 2k, ...``. The stream is therefore reproducible, identical for any number of workers,
and no two workers repeat each other. :meth:`SyntheticStacks.set_epoch` changes ``e`` (it reaches the
workers only when they are restarted, i.e. without ``persistent_workers``).

Use :func:`build_training_data` to get the stream the trainer consumes.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from model.lens import LensProfile
from model.lens_sampling import LensSampling, draw_lens_and_focus
from model.optics import blur_per_dioptre_px, check_focus_distances, working_range_m
from model.synth.noise import NO_NOISE, SensorNoise
from model.synth.scenes import default_scene_range_m

__all__ = [
    "SynthConfig",
    "SyntheticStacks",
    "RGBDStacks",
    "FolderStacks",
    "RandomBatches",
    "LensMismatchError",
    "collate_stacks",
    "default_scene_range_m",
    "build_training_data",
]

log = logging.getLogger(__name__)

FocusMode = Literal["fixed", "bins"]
ITEM_KEYS = ("images", "focus_m", "depth", "aif")


class LensMismatchError(ValueError):
    """A recorded stack was taken with another lens than the one being trained for."""


def _pair(value: Any, name: str, kind: type = float) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a pair, got {value!r}")
    return kind(value[0]), kind(value[1])


@dataclass
class SynthConfig:
    """How training stacks are rendered.

    Attributes:
        lens: the camera; blur in pixels uses its ``pixel_pitch_m`` (the pitch of rendered pixels).
        crop_hw: ``(height, width)`` of each stack, pixels.
        focus_m: focus distances, metres. ``"fixed"`` mode uses them (a random sorted subset when the
            stack size is below their number); ``"bins"`` mode uses their span unless
            ``focus_range_m`` is given.
        focus_mode: ``"fixed"`` or ``"bins"`` (paper appendix A.1/A.2: the focus range is split into
            S equal bins and one focus distance is drawn uniformly in each bin, per stack).
        focus_jitter: ``"fixed"`` mode: each focus distance is jittered by up to this fraction of its
            dioptres (uniform), e.g. ``0.03``.
        focus_range_m: ``"bins"`` mode: ``(min, max)`` focus distance, metres.
        bin_spacing: ``"bins"`` mode: bins equal in ``"metres"`` (the paper) or in ``"dioptres"``.
        stack_size: inclusive ``(S_min, S_max)``; S is drawn once per batch. Default: all focus distances.
        working_range_m: ``(near, far)`` the model predicts in; default
            :func:`model.optics.working_range_m` of the focus distances.
        scene_range_m: ``(near, far)`` depth range of the scenes (depths are drawn uniform in inverse
            depth inside it); default :func:`default_scene_range_m`. Must lie inside the working range.
        noise: sensor noise added after rendering.
        augment: random flips / 90-degree rotations (square crops) and per-stack colour gains and
            brightness (applied to the all-in-focus image before rendering, so ``aif`` stays consistent).
        gain_range: per-channel gain range.
        brightness_range: overall brightness range.
        batch_size: yield batches of this many stacks, or single items when ``None``.
        epoch_size: batches (or items) per epoch; ``None`` streams without end.
        seed: base seed.
        max_psf_radius: cap on the PSF window radius passed to the renderer (pixels), or ``None``.
        n_objects: inclusive range of objects per procedural scene.
        lens_sampling: draw a lens, focus set and scene range per batch (:mod:`model.lens_sampling`) for
            the lens-aware network, instead of ``lens``/``focus_m``/``scene_range_m``; items then also
            carry ``k`` (pixels per dioptre) and ``lens`` (focal length, f-number, pixel pitch).
        weak_texture_prob: probability that a surface's texture contrast is cut to 3-30 %.
        disc_prob: probability that a batch is rendered by the layered uniform-disc renderer
            (:func:`model.synth.layered.render_stack_layered`: disc PSF, occlusion) instead of the Gaussian
            training renderer, so the network meets the PSF shape and occlusion edges of real lenses.
        vignetting: largest relative brightness fall-off at a crop corner (drawn uniform in
            ``[0, vignetting]`` per stack, quadratic in the distance from a random optical centre; the
            same for every frame, as it is in the self-supervised loss's re-rendering of the AIF).
        psf_mix: ``(gaussian, disc, generalised)`` probabilities (summing to 1) of the PSF a batch is
            rendered with: the Gaussian training renderer (:func:`render_batch`), the layered renderer with
            the uniform disc, or the layered renderer with a generalised Gaussian of shape ``beta`` drawn
            log-uniform in ``psf_beta_range`` (:func:`model.synth.layered.psf_kernel`; 2 = Gaussian,
            4-8 = a disc with soft edges). ``None`` (default): ``(1 - disc_prob, disc_prob, 0)``; give
            either this or ``disc_prob``.
        psf_beta_range: ``(low, high)`` of the generalised PSF's shape, ``1 <= low <= high``.
        psf_min_sigma_px: smallest per-axis PSF blur of layered batches, pixels, added in quadrature
            (:data:`model.synth.layered.PIXEL_BOX_SIGMA_PX` = 0.29: never narrower than one pixel's box
            footprint); 0 (default) none. The Gaussian renderer's batches are not affected.
        breathing: residual focus breathing after alignment, as a fraction of the thin-lens breathing
            (0 = off, default). Per stack a fraction ``e`` is drawn uniform in ``[-breathing, breathing]``
            and frame ``i`` is magnified by ``breathing_magnification(focus_i, lens, nearest focus) ** e``
            (:func:`model.optics.breathing_magnification`) about an optical centre drawn anywhere in the
            frame the crop came from (the lens's ``image_size``, else twice the crop), before the noise.
            The device path aligns every sweep for breathing before inference (:mod:`device.align`: the
            thin lens about the image centre), so what reaches the network is a residual — the real lens
            breathing differently from the thin lens and its optical centre off the image centre — of a
            fraction of a pixel: train with 0.1-0.2 (shipped lens, focus 1-6 m, 320x240: full breathing
            moves a corner pixel 8.4 px, 0.1 of it at most 0.85 px). 1 covers stacks never aligned.
        photo_dir: a folder of extra training photographs (``.png``/``.jpg``, e.g. from
            ``scripts/get_photos.sh``) used beside scikit-image's training photographs
            (:func:`model.synth.textures.folder_photos`; held-out photographs in it are skipped). ``None``
            (default): scikit-image's only. A missing or empty folder is an error here.
    """

    lens: LensProfile
    crop_hw: tuple[int, int] = (128, 128)
    focus_m: tuple[float, ...] = (1.0, 1.5, 2.5, 4.0, 6.0)
    focus_mode: FocusMode = "fixed"
    focus_jitter: float = 0.0
    focus_range_m: tuple[float, float] | None = None
    bin_spacing: Literal["metres", "dioptres"] = "metres"
    stack_size: tuple[int, int] | None = None
    working_range_m: tuple[float, float] | None = None
    scene_range_m: tuple[float, float] | None = None
    noise: SensorNoise = field(default_factory=SensorNoise)
    augment: bool = True
    gain_range: tuple[float, float] = (0.85, 1.15)
    brightness_range: tuple[float, float] = (0.7, 1.15)
    batch_size: int | None = None
    epoch_size: int | None = None
    seed: int = 0
    max_psf_radius: int | None = 24
    n_objects: tuple[int, int] = (1, 6)
    lens_sampling: LensSampling | None = None
    weak_texture_prob: float = 0.0
    disc_prob: float = 0.0
    vignetting: float = 0.0
    psf_mix: tuple[float, float, float] | None = None
    psf_beta_range: tuple[float, float] = (2.0, 8.0)
    psf_min_sigma_px: float = 0.0
    breathing: float = 0.0
    photo_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.lens, LensProfile):
            raise TypeError(f"lens must be a LensProfile, got {type(self.lens).__name__}")
        self.crop_hw = _pair(self.crop_hw, "crop_hw", int)
        if min(self.crop_hw) < 8:
            raise ValueError(f"crop_hw must be at least 8x8, got {self.crop_hw}")
        self.focus_m = tuple(sorted(check_focus_distances(list(self.focus_m), self.lens, "focus_m")))
        if len(self.focus_m) < 1:
            raise ValueError("focus_m needs at least one focus distance")
        if self.focus_mode not in ("fixed", "bins"):
            raise ValueError(f"focus_mode must be 'fixed' or 'bins', got {self.focus_mode!r}")
        if self.bin_spacing not in ("metres", "dioptres"):
            raise ValueError(f"bin_spacing must be 'metres' or 'dioptres', got {self.bin_spacing!r}")
        if not (isinstance(self.focus_jitter, (int, float)) and 0 <= self.focus_jitter < 0.5):
            raise ValueError(f"focus_jitter must be in [0, 0.5), got {self.focus_jitter!r}")
        if self.focus_range_m is not None:
            lo, hi = check_focus_distances(list(_pair(self.focus_range_m, "focus_range_m")), self.lens, "focus_range_m")
            if not lo < hi:
                raise ValueError(f"focus_range_m must be (min, max) with min < max, got {self.focus_range_m}")
            self.focus_range_m = (lo, hi)
        n_focus = len(self.focus_m)
        smin, smax = _pair(self.stack_size, "stack_size", int) if self.stack_size is not None else (n_focus, n_focus)
        if not 1 <= smin <= smax:
            raise ValueError(f"stack_size must be (S_min, S_max) with 1 <= S_min <= S_max, got {(smin, smax)}")
        if self.focus_mode == "fixed" and smax > n_focus and self.lens_sampling is None:
            raise ValueError(f"fixed focus mode: stack_size max {smax} exceeds the {n_focus} focus distances")
        self.stack_size = (smin, smax)
        if self.focus_mode == "bins" and self.focus_range_m is None and n_focus < 2:
            raise ValueError("bins focus mode needs focus_range_m or at least two focus_m")
        fmin, fmax = self.focus_span_m
        if self.working_range_m is None:
            self.working_range_m = working_range_m([fmin, fmax], self.lens)
        near, far = _pair(self.working_range_m, "working_range_m")
        if not (self.lens.focal_length_m < near < far and math.isfinite(far)):
            raise ValueError(f"working_range_m must be (near, far) with f < near < far, got {(near, far)}")
        self.working_range_m = (near, far)
        if self.scene_range_m is None:
            self.scene_range_m = default_scene_range_m((fmin, fmax), (near, far))
        lo, hi = _pair(self.scene_range_m, "scene_range_m")
        if not (near * (1 - 1e-6) <= lo < hi <= far * (1 + 1e-6)):
            raise ValueError(f"scene_range_m {(lo, hi)} must satisfy near <= lo < hi <= far for the working range {(near, far)}")
        self.scene_range_m = (lo, hi)
        if not isinstance(self.noise, SensorNoise):
            raise TypeError(f"noise must be a SensorNoise, got {type(self.noise).__name__}")
        for name in ("gain_range", "brightness_range"):
            a, b = _pair(getattr(self, name), name)
            if not 0 < a <= b:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(a, b)}")
            setattr(self, name, (a, b))
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or int(self.batch_size) < 1):
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size!r}")
        if self.epoch_size is not None and int(self.epoch_size) < 1:
            raise ValueError(f"epoch_size must be >= 1 or None, got {self.epoch_size!r}")
        if self.max_psf_radius is not None and int(self.max_psf_radius) < 1:
            raise ValueError(f"max_psf_radius must be >= 1 or None, got {self.max_psf_radius!r}")
        self.n_objects = _pair(self.n_objects, "n_objects", int)
        if self.lens_sampling is not None and not isinstance(self.lens_sampling, LensSampling):
            raise TypeError(f"lens_sampling must be a LensSampling or None, got {type(self.lens_sampling).__name__}")
        if not 0 <= float(self.weak_texture_prob) <= 1:
            raise ValueError(f"weak_texture_prob must be in [0, 1], got {self.weak_texture_prob!r}")
        if not 0 <= float(self.disc_prob) <= 1:
            raise ValueError(f"disc_prob must be in [0, 1], got {self.disc_prob!r}")
        if not 0 <= float(self.vignetting) < 1:
            raise ValueError(f"vignetting must be in [0, 1), got {self.vignetting!r}")
        if self.psf_mix is not None:
            if isinstance(self.psf_mix, (str, bytes)) or not isinstance(self.psf_mix, Sequence) or len(self.psf_mix) != 3:
                raise ValueError(f"psf_mix must be three probabilities (gaussian, disc, generalised), got {self.psf_mix!r}")
            mix = tuple(float(v) for v in self.psf_mix)
            if not all(math.isfinite(v) and v >= 0 for v in mix) or abs(sum(mix) - 1.0) > 1e-6:
                raise ValueError(f"psf_mix must be three probabilities >= 0 summing to 1 (gaussian, disc, generalised), got {self.psf_mix!r}")
            if self.disc_prob:
                raise ValueError(f"give psf_mix or disc_prob, not both (disc_prob {self.disc_prob} is psf_mix [{1 - self.disc_prob:g}, {self.disc_prob:g}, 0])")
            self.psf_mix = mix  # type: ignore[assignment]
        blo, bhi = _pair(self.psf_beta_range, "psf_beta_range")
        if not 1 <= blo <= bhi < math.inf:
            raise ValueError(f"psf_beta_range must be (low, high) with 1 <= low <= high, finite, got {(blo, bhi)}")
        self.psf_beta_range = (blo, bhi)
        if not (math.isfinite(float(self.psf_min_sigma_px)) and 0 <= float(self.psf_min_sigma_px) <= 4):
            raise ValueError(f"psf_min_sigma_px must be in [0, 4] pixels (0.29 = one pixel's box), got {self.psf_min_sigma_px!r}")
        if not (math.isfinite(float(self.breathing)) and 0 <= float(self.breathing) <= 1):
            raise ValueError(f"breathing must be in [0, 1] (a fraction of the thin-lens breathing), got {self.breathing!r}")
        if self.photo_dir is not None:
            from model.synth.textures import folder_photos

            self.photo_dir = str(self.photo_dir)
            folder_photos(self.photo_dir)  # a missing or empty folder fails here, before any work

    @property
    def psf_probs(self) -> tuple[float, float]:
        """``(disc, generalised)`` probabilities of a batch's PSF (the rest: the Gaussian renderer)."""
        if self.psf_mix is None:
            return float(self.disc_prob), 0.0
        return self.psf_mix[1], self.psf_mix[2]

    def draw_psf(self, rng: np.random.Generator) -> float | None:
        """One batch's PSF drawn from :attr:`psf_probs`: ``None`` for the Gaussian training renderer, else the
        layered renderer's shape ``beta`` (``inf``: the uniform disc; log-uniform in ``psf_beta_range``
        otherwise). Draws nothing from ``rng`` when every batch is Gaussian (today's default stream)."""
        p_disc, p_gen = self.psf_probs
        if p_disc + p_gen <= 0:
            return None
        u = rng.random()
        if u < p_disc:
            return math.inf
        if u < p_disc + p_gen:
            lo, hi = self.psf_beta_range
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        return None

    @property
    def focus_span_m(self) -> tuple[float, float]:
        """``(min, max)`` focus distance in play, metres."""
        if self.focus_mode == "bins" and self.focus_range_m is not None:
            return self.focus_range_m
        return self.focus_m[0], self.focus_m[-1]

    def draw_focus(self, rng: np.random.Generator, s: int) -> np.ndarray:
        """Focus distances of one stack of ``s`` frames (float64 ``(s,)`` metres, nearest first)."""
        if self.focus_mode == "fixed":
            fs = np.asarray(self.focus_m, np.float64)
            if s < len(fs):
                fs = fs[np.sort(rng.choice(len(fs), size=s, replace=False))]
            if self.focus_jitter > 0:
                dpt = (1.0 / fs) * (1.0 + rng.uniform(-self.focus_jitter, self.focus_jitter, fs.shape))
                fs = 1.0 / dpt
        else:
            a, b = self.focus_span_m
            if self.bin_spacing == "metres":
                edges = np.linspace(a, b, s + 1)
                fs = rng.uniform(edges[:-1], edges[1:])
            else:
                edges = np.linspace(1.0 / b, 1.0 / a, s + 1)
                fs = 1.0 / rng.uniform(edges[:-1], edges[1:])
        return np.sort(np.maximum(fs, self.lens.focal_length_m * 1.01))


# ----------------------------------------------------------------------------- rendering


def _index_stream(epoch_size: int | None) -> Iterator[int]:
    """This worker's share of the batch/item numbers ``0, 1, 2, ...``."""
    info = get_worker_info()
    wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
    i = wid
    while epoch_size is None or i < epoch_size:
        yield i
        i += nw


def _augment_scene(rng: np.random.Generator, cfg: SynthConfig, aif: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not cfg.augment:
        return aif, depth
    if rng.random() < 0.5:
        aif, depth = aif[:, ::-1], depth[:, ::-1]
    if rng.random() < 0.5:
        aif, depth = aif[::-1], depth[::-1]
    if aif.shape[0] == aif.shape[1]:
        k = int(rng.integers(4))
        aif, depth = np.rot90(aif, k), np.rot90(depth, k)
    gains = rng.uniform(*cfg.gain_range, size=3) * rng.uniform(*cfg.brightness_range)
    aif = np.clip(aif * gains.astype(np.float32), 0.0, 1.0)
    return np.ascontiguousarray(aif, np.float32), np.ascontiguousarray(depth, np.float32)


def render_batch(
    aif: np.ndarray,
    depth: np.ndarray,
    focus_m: np.ndarray,
    lens: LensProfile,
    noise: SensorNoise = NO_NOISE,
    rng: np.random.Generator | None = None,
    max_psf_radius: int | None = None,
) -> torch.Tensor:
    """Render stacks with the training renderer (the gather-form Gaussian of :mod:`model.render`).

    Equivalent to :func:`model.render.render_stack` with the blur :func:`model.optics.coc_sigma_px`
    gives, except that every frame gets the window radius *its own* largest blur needs
    (:func:`model.render.psf_window_radius`, capped at ``max_psf_radius``) instead of the batch's
    largest: frames focused near most of the scene render much faster.

    Args:
        aif: float32 ``(B, H, W, 3)`` in [0, 1].
        depth: float32 ``(B, H, W)`` metres, finite.
        focus_m: ``(B, S)`` metres.
        lens: the lens (pixel pitch of these pixels).
        noise, rng: sensor noise and the generator that seeds it.
        max_psf_radius: cap on the PSF window radius.

    Returns:
        float32 tensor ``(B, S, 3, H, W)`` in [0, 1].
    """
    from model.render import rerender_stack

    a = torch.from_numpy(np.ascontiguousarray(aif, np.float32)).permute(0, 3, 1, 2).contiguous()
    d = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[:, None]
    f = torch.from_numpy(np.asarray(focus_m, np.float32))
    with torch.no_grad():
        out, _ = rerender_stack(a, d, f, lens, max_radius=max_psf_radius, per_frame_radius=True)
        out = _apply_noise(out, noise, rng)
    return out.float()


def _apply_noise(images: torch.Tensor, noise: SensorNoise, rng: np.random.Generator | None) -> torch.Tensor:
    """``images`` (any shape, torch) with ``noise`` (a torch generator seeded from ``rng``), clipped to [0, 1]."""
    if noise.is_zero:
        return images.clamp(0.0, 1.0)
    if rng is None:
        raise ValueError("rng is required when noise is applied")
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return noise.apply_torch(images, gen)


def render_batch_layered(
    aif: np.ndarray,
    depth: np.ndarray,
    focus_m: np.ndarray,
    lens: LensProfile,
    noise: SensorNoise = NO_NOISE,
    rng: np.random.Generator | None = None,
    beta: float = math.inf,
    min_sigma_px: float = 0.0,
) -> torch.Tensor:
    """Render stacks with the layered uniform-disc renderer (:mod:`model.synth.layered`; occlusion-aware).

    Same arguments and result as :func:`render_batch`: ``aif (B, H, W, 3)``, ``depth (B, H, W)`` metres,
    ``focus_m (B, S)`` metres -> float32 ``(B, S, 3, H, W)`` in [0, 1]. ``beta`` and ``min_sigma_px``
    shape the PSF (:func:`model.synth.layered.psf_kernel`; the defaults: the uniform disc).
    """
    from model.synth.layered import render_stack_layered

    out = [
        render_stack_layered(a, d, f, lens, noise=None if noise.is_zero else noise, rng=rng, beta=beta, min_sigma_px=min_sigma_px)
        for a, d, f in zip(aif, depth, focus_m)
    ]
    return torch.from_numpy(np.stack(out)).permute(0, 1, 4, 2, 3).contiguous().float()


def _vignette(rng: np.random.Generator, aif: np.ndarray, strength: float) -> np.ndarray:
    """``aif (h, w, 3)`` vignetted (:func:`model.synth.frame.vignette`) by a strength drawn uniform in
    ``[0, strength]`` about a random optical centre inside the crop's middle half (a crop of a larger frame)."""
    from model.synth.frame import vignette

    h, w = aif.shape[:2]
    v = rng.uniform(0.0, strength)
    cy, cx = rng.uniform(0.25, 0.75) * (h - 1), rng.uniform(0.25, 0.75) * (w - 1)
    return vignette(aif, v, centre=(cx, cy)).astype(np.float32)


def _breathe(rng: np.random.Generator, images: torch.Tensor, focus_m: np.ndarray, lens: LensProfile, strength: float) -> torch.Tensor:
    """Residual focus breathing (:attr:`SynthConfig.breathing`) of ``images (B, S, 3, H, W)`` focused at
    ``focus_m (B, S)`` metres: per stack a fraction ``e ~ U(-strength, strength)`` of the thin-lens
    magnification relative to the nearest focus (:func:`model.optics.breathing_magnification`), about an
    optical centre anywhere in the frame the crop came from; bilinear, reflected at the border (as
    :func:`model.synth.frame.magnify`, which only scales about the image centre)."""
    import cv2

    from model.optics import breathing_magnification

    h, w = images.shape[-2:]
    fw, fh = lens.image_size if lens.image_size is not None and lens.image_size[0] >= w and lens.image_size[1] >= h else (2 * w, 2 * h)
    out = images.numpy().copy()
    for b in range(out.shape[0]):
        e = rng.uniform(-strength, strength)
        # the crop's top-left corner at a random place in the frame; the optical centre at the frame's centre
        cx = (fw - 1) / 2.0 - rng.uniform(0.0, fw - w)
        cy = (fh - 1) / 2.0 - rng.uniform(0.0, fh - h)
        ref = float(np.min(focus_m[b]))
        for s in range(out.shape[1]):
            m = breathing_magnification(float(focus_m[b, s]), lens, ref) ** e
            if abs(m - 1.0) < 1e-9:
                continue
            r = 1.0 / m  # output pixel x samples the unmagnified frame at c + (x - c) / m
            mat = np.array([[r, 0.0, cx * (1 - r)], [0.0, r, cy * (1 - r)]], np.float64)
            frame = np.ascontiguousarray(out[b, s].transpose(1, 2, 0))
            warped = cv2.warpAffine(frame, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
            out[b, s] = warped.reshape(h, w, -1).transpose(2, 0, 1)
    return torch.from_numpy(out)


class _RenderedStacks(IterableDataset):
    """Shared machinery of :class:`SyntheticStacks` and :class:`RGBDStacks`."""

    def __init__(self, config: SynthConfig) -> None:
        super().__init__()
        if not isinstance(config, SynthConfig):
            raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
        self.config = config
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (part of every seed)."""
        self.epoch = int(epoch)

    def _scene(self, rng: np.random.Generator, h: int, w: int, scene_range_m: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def make(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Batch (or item, when ``batch_size`` is ``None``) number ``index`` — deterministic."""
        cfg = self.config
        rng = np.random.default_rng([int(cfg.seed) & 0xFFFFFFFFFFFF, int(self.epoch if epoch is None else epoch), int(index)])
        b = cfg.batch_size or 1
        h, w = cfg.crop_hw
        draw = None
        if cfg.lens_sampling is not None:
            draw = draw_lens_and_focus(rng, cfg.lens_sampling)
            s, lens, (near, far), scene_range = len(draw.focus_m), draw.lens, draw.working_range_m, draw.scene_range_m
        else:
            smin, smax = cfg.stack_size  # type: ignore[misc]
            s = int(rng.integers(smin, smax + 1))
            lens, scene_range = cfg.lens, None
            near, far = cfg.working_range_m  # type: ignore[misc]
        aifs, depths, renders, focus = [], [], [], []
        for _ in range(b):
            aif, depth = self._scene(rng, h, w, scene_range) if scene_range is not None else self._scene(rng, h, w)
            aif, depth = _augment_scene(rng, cfg, aif, depth)
            known = np.isfinite(depth)
            rd = depth if known.all() else _fill(depth)
            aifs.append(aif)
            depths.append(depth)
            renders.append(np.clip(rd, near, far))
            focus.append(draw.focus_m if draw is not None else cfg.draw_focus(rng, s))
        focus_arr = np.stack(focus)
        if cfg.vignetting > 0:
            aifs = [_vignette(rng, a, cfg.vignetting) for a in aifs]
        beta = self.config.draw_psf(rng)
        noise = NO_NOISE if cfg.breathing > 0 else cfg.noise  # with breathing: noise after the warp
        if beta is not None:
            images = render_batch_layered(np.stack(aifs), np.stack(renders), focus_arr, lens, noise, rng, beta, cfg.psf_min_sigma_px)
        else:
            images = render_batch(np.stack(aifs), np.stack(renders), focus_arr, lens, noise, rng, cfg.max_psf_radius)
        if cfg.breathing > 0:
            images = _apply_noise(_breathe(rng, images, focus_arr, lens, cfg.breathing), cfg.noise, rng).float()
        out = {
            "images": images,
            "focus_m": torch.from_numpy(focus_arr.astype(np.float32)),
            "depth": torch.from_numpy(np.stack(depths)[:, None].astype(np.float32)),
            "aif": torch.from_numpy(np.stack(aifs)).permute(0, 3, 1, 2).contiguous(),
        }
        if draw is not None:
            out["k"] = torch.full((b,), float(blur_per_dioptre_px(lens)), dtype=torch.float32)
            out["lens"] = torch.tensor([[lens.focal_length_m, lens.f_number, lens.pixel_pitch_m]] * b, dtype=torch.float64)
        if cfg.batch_size is None:
            out = {k: v[0] for k, v in out.items()}
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.epoch
        for i in _index_stream(self.config.epoch_size):
            yield self.make(i, epoch)


def _fill(depth: np.ndarray) -> np.ndarray:
    from model.synth.layered import fill_unknown_depth

    return fill_unknown_depth(depth)


class SyntheticStacks(_RenderedStacks):
    """Procedural scenes rendered into focal stacks on the fly (an ``IterableDataset``).

    Each item (or batch, see the module docstring) is drawn from
    :func:`model.synth.scenes.random_scene` inside ``config.scene_range_m`` with the ``"train"``
    textures, augmented, rendered with :func:`model.render.render_stack` at the blur
    :func:`model.optics.coc_sigma_px` gives for ``config.lens``, and noised.

    Example::

        ds = SyntheticStacks(SynthConfig(lens, crop_hw=(128, 128), batch_size=8, seed=1))
        loader = DataLoader(ds, batch_size=None, num_workers=2)
    """

    def _scene(self, rng: np.random.Generator, h: int, w: int, scene_range_m: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        from model.synth.scenes import random_scene

        from model.synth.textures import training_photo_dir

        lo, hi = scene_range_m or self.config.scene_range_m  # type: ignore[misc]
        with training_photo_dir(self.config.photo_dir):
            return random_scene(
                rng, h, w, lo, hi, split="train", n_objects=self.config.n_objects, weak_texture_prob=self.config.weak_texture_prob
            )


class RGBDStacks(_RenderedStacks):
    """Stacks rendered on the fly from an RGB-D folder (layout: :mod:`model.synth.rgbd`).

    Each scene is a random crop of a random pair. With ``resize_to_lens`` (default) and a lens that
    knows its ``image_size``, every pair is first centre-cropped to that aspect ratio and resized to
    ``image_size``, so its pixels have the lens's pitch. Unknown depth is filled from the nearest known
    pixel for rendering (the ``depth`` target keeps NaN there) and depths are clipped into the working
    range. Pairs smaller than the crop are scaled up to fit.
    """

    def __init__(self, root: str | os.PathLike[str], config: SynthConfig, resize_to_lens: bool = True) -> None:
        super().__init__(config)
        from model.synth.rgbd import find_rgbd_pairs

        self.pairs = find_rgbd_pairs(root)
        self.resize_to_lens = bool(resize_to_lens)

    def _scene(self, rng: np.random.Generator, h: int, w: int, scene_range_m: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        from model.synth.rgbd import read_rgbd

        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        rgb, depth = read_rgbd(pair)
        size = self.config.lens.image_size
        if self.resize_to_lens and size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
            rgb, depth = _fit_to_size(rgb, depth, size)
        ih, iw = depth.shape
        if ih < h or iw < w:
            scale = max(h / ih, w / iw)
            nw, nh = max(w, int(math.ceil(iw * scale))), max(h, int(math.ceil(ih * scale)))
            rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
            depth = cv2.resize(depth, (nw, nh), interpolation=cv2.INTER_NEAREST)
            ih, iw = nh, nw
        y0 = int(rng.integers(0, ih - h + 1))
        x0 = int(rng.integers(0, iw - w + 1))
        near, far = scene_range_m or self.config.working_range_m  # type: ignore[misc]
        d = depth[y0 : y0 + h, x0 : x0 + w].copy()
        ok = np.isfinite(d)
        d[ok] = np.clip(d[ok], near, far)
        if not ok.any():
            d[:] = float(np.exp(rng.uniform(np.log(near), np.log(far))))
        return np.ascontiguousarray(rgb[y0 : y0 + h, x0 : x0 + w], np.float32), d.astype(np.float32)


def _fit_to_size(rgb: np.ndarray, depth: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop to the aspect of ``size = (w, h)`` and resize: colour by area (bilinear when enlarging),
    depth by nearest (:func:`model.synth.rgbd.crop_resize`, window snapped with ``align="floor"``)."""
    from model.synth.rgbd import crop_resize

    return crop_resize(rgb, depth, (int(size[0]), int(size[1])), align="floor")


# ----------------------------------------------------------------------------- recorded stacks


def _frame_size(folder: Path) -> tuple[int, int]:
    """``(width, height)`` of the first frame of a stack, from the PNG header."""
    import json

    from PIL import Image

    meta = json.loads((folder / "stack.json").read_text(encoding="utf-8"))
    first = meta["frames"][0]["file"]
    with Image.open(folder / first) as im:
        return int(im.size[0]), int(im.size[1])


def _select_nearest(focus: np.ndarray, targets: Sequence[float], source: Path) -> np.ndarray:
    """Indices of the frames nearest (in dioptres) to ``targets``, distinct, in target order."""
    if len(focus) < len(targets):
        raise ValueError(f"{source}: has {len(focus)} frames, {len(targets)} focus distances asked for")
    dist = np.abs(1.0 / focus[None, :] - 1.0 / np.asarray(targets, np.float64)[:, None])
    idx = np.empty(len(targets), np.int64)
    used: set[int] = set()
    for t in np.argsort(dist.min(axis=1)):  # the best matched targets pick first
        j = next(int(j) for j in np.argsort(dist[t]) if int(j) not in used)
        used.add(j)
        idx[t] = j
    return np.sort(idx)


class FolderStacks(Dataset):
    """Random crops of your ``focal-stack/1`` folders (a map-style ``Dataset``; one item per folder).

    Args:
        root: folder searched recursively (:func:`model.formats.find_stacks`).
        lens: the training lens. Every stack's lens must match it (focal length, f-number and pixel
            pitch within ``lens_rel_tol``; the pitch after the resize below), else
            :class:`LensMismatchError` names the stack and the numbers.
        crop_hw: ``(height, width)`` of the random crop; a stack smaller than that raises ``ValueError``.
        frames: ``"all"`` (every frame) or focus distances in metres: for each, the frame nearest to it in
            dioptres (distinct frames; a stack with too few frames raises ``ValueError``).
        augment: random horizontal / vertical flips, and 90-degree rotations for square crops.
        seed: base seed; item ``i`` of epoch ``e`` uses ``default_rng([seed, e, i])``.
        resize_to_lens: frames with finer pixels than the training lens (a smaller ``pixel_pitch_m`` in
            their ``stack.json``) are resized by the pitch ratio, so that their pixels match the
            training lens's; without it such stacks are refused.
        lens_rel_tol: relative tolerance of the lens comparison.

    Items: see the module docstring; ``depth``/``aif`` are all-NaN when the folder has none.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        lens: LensProfile,
        crop_hw: tuple[int, int] = (128, 128),
        frames: Literal["all"] | Sequence[float] = "all",
        augment: bool = True,
        seed: int = 0,
        resize_to_lens: bool = True,
        lens_rel_tol: float = 0.05,
    ) -> None:
        from model.formats import find_stacks, read_stack

        self.root = Path(root)
        self.lens = lens
        self.crop_hw = _pair(crop_hw, "crop_hw", int)
        if min(self.crop_hw) < 1:
            raise ValueError(f"crop_hw must be positive, got {crop_hw}")
        if isinstance(frames, str):
            if frames != "all":
                raise ValueError(f"frames must be 'all' or a list of focus distances, got {frames!r}")
            self.frames: Literal["all"] | tuple[float, ...] = "all"
        else:
            self.frames = tuple(check_focus_distances(list(frames), lens, "frames"))
            if not self.frames:
                raise ValueError("frames: need at least one focus distance")
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.resize_to_lens = bool(resize_to_lens)
        self.lens_rel_tol = float(lens_rel_tol)
        self.folders = find_stacks(self.root)
        if not self.folders:
            raise ValueError(f"{self.root}: no focal-stack/1 folders (stack.json) found")
        self.selection: list[np.ndarray] = []
        self.resize: list[tuple[int, int] | None] = []
        for folder in self.folders:
            st = read_stack(folder, load_images=False)
            target = self._check_lens(folder, st.lens)
            self.resize.append(target)
            fm = np.asarray(st.focus_m, np.float64)
            sel = np.arange(len(fm)) if self.frames == "all" else _select_nearest(fm, self.frames, folder)
            self.selection.append(sel)
            if self.frames != "all":
                worst = float(np.max(np.abs(1.0 / fm[sel] - 1.0 / np.asarray(self.frames))))
                if worst > 0.05:
                    log.warning("%s: nearest frames are up to %.3f dpt from the asked focus distances", folder, worst)
        self.stack_sizes = [len(s) for s in self.selection]

    def _check_lens(self, folder: Path, data_lens: LensProfile) -> tuple[int, int] | None:
        """Raise :class:`LensMismatchError` unless the stack's lens matches; returns the resize target.

        Frames whose pixels are finer than the training lens's (smaller pitch, e.g. full-resolution
        captures for a model trained on binned images) are resized by the pitch ratio when
        ``resize_to_lens``; coarser pixels are refused.
        """
        tol = self.lens_rel_tol
        diffs = []
        for key in ("focal_length_m", "f_number"):
            a, b = getattr(self.lens, key), getattr(data_lens, key)
            if abs(a - b) > tol * max(abs(a), abs(b)):
                diffs.append(f"{key} {b:g} (training lens {self.lens.name!r}: {a:g})")
        ratio = data_lens.pixel_pitch_m / self.lens.pixel_pitch_m
        target = None
        if abs(ratio - 1.0) > tol:
            if self.resize_to_lens and ratio < 1.0:
                w, h = _frame_size(folder)
                target = (max(1, int(round(w * ratio))), max(1, int(round(h * ratio))))
            else:
                diffs.append(
                    f"pixel_pitch_m {data_lens.pixel_pitch_m:g} (training lens {self.lens.name!r}: {self.lens.pixel_pitch_m:g}"
                    + ("; frames coarser than the training pixels cannot be resized)" if ratio > 1 else ")")
                )
        if diffs:
            raise LensMismatchError(
                f"{folder}: taken with another lens than the training lens: " + ", ".join(diffs)
                + ". Train with that stack's lens profile (lens=PATH) or leave this stack out."
            )
        return target

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (part of every item's seed)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import cv2

        from model.formats import read_stack

        if not 0 <= int(index) < len(self.folders):
            raise IndexError(index)
        i = int(index)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFFFFFF, self.epoch, i])
        st = read_stack(self.folders[i])
        sel = self.selection[i]
        images = st.images[sel]
        focus = np.asarray(st.focus_m, np.float64)[sel]
        hh, ww = images.shape[1:3]
        depth = st.depth if st.depth is not None else np.full((hh, ww), np.nan, np.float32)
        aif = st.aif if st.aif is not None else np.full((hh, ww, 3), np.nan, np.float32)
        if self.resize[i] is not None:
            tw, th = self.resize[i]  # type: ignore[misc]
            interp = cv2.INTER_AREA if ww > tw else cv2.INTER_LINEAR
            images = np.stack([cv2.resize(im, (tw, th), interpolation=interp) for im in images])
            depth = cv2.resize(depth, (tw, th), interpolation=cv2.INTER_NEAREST)
            aif = cv2.resize(aif, (tw, th), interpolation=interp)
            hh, ww = th, tw
        ch, cw = self.crop_hw
        if hh < ch or ww < cw:
            raise ValueError(f"{self.folders[i]}: frames are {ww}x{hh}, smaller than the {cw}x{ch} crop")
        y0 = int(rng.integers(0, hh - ch + 1))
        x0 = int(rng.integers(0, ww - cw + 1))
        images = images[:, y0 : y0 + ch, x0 : x0 + cw]
        depth = depth[y0 : y0 + ch, x0 : x0 + cw]
        aif = aif[y0 : y0 + ch, x0 : x0 + cw]
        if self.augment:
            if rng.random() < 0.5:
                images, depth, aif = images[:, :, ::-1], depth[:, ::-1], aif[:, ::-1]
            if rng.random() < 0.5:
                images, depth, aif = images[:, ::-1], depth[::-1], aif[::-1]
            if ch == cw:
                k = int(rng.integers(4))
                images, depth, aif = np.rot90(images, k, axes=(1, 2)), np.rot90(depth, k), np.rot90(aif, k)
        return {
            "images": torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32)),
            "focus_m": torch.from_numpy(focus.astype(np.float32)),
            "depth": torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None],
            "aif": torch.from_numpy(np.ascontiguousarray(aif.transpose(2, 0, 1), np.float32)),
        }


def _subsample_frames(item: dict[str, torch.Tensor], s: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Keep ``s`` frames of an item: its frames split into ``s`` consecutive bins, one drawn per bin."""
    n = item["images"].shape[0]
    if s == n:
        return item
    picks = [int(rng.choice(b)) for b in np.array_split(np.arange(n), s)]
    return {**item, "images": item["images"][picks], "focus_m": item["focus_m"][picks]}


class RandomBatches(IterableDataset):
    """A stream of random batches from a map-style stack dataset (e.g. :class:`FolderStacks`).

    For batch number ``i`` (seeded like the rendered datasets): S is drawn in ``stack_size`` (capped at
    the largest stack), ``batch_size`` stacks with at least S frames are drawn at random (with
    replacement), each is cut to S frames (its frames split into S bins, one frame per bin) and the
    items are collated. Use with ``DataLoader(ds, batch_size=None)``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        stack_size: tuple[int, int] | None = None,
        seed: int = 0,
        epoch_size: int | None = None,
    ) -> None:
        super().__init__()
        sizes = list(getattr(dataset, "stack_sizes", []))
        if len(sizes) != len(dataset):  # type: ignore[arg-type]
            raise TypeError("dataset must have a stack_sizes list (one stack size per item)")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.sizes = np.asarray(sizes)
        self.batch_size = int(batch_size)
        smin, smax = _pair(stack_size, "stack_size", int) if stack_size is not None else (int(self.sizes.min()), int(self.sizes.min()))
        if not 1 <= smin <= smax:
            raise ValueError(f"stack_size must be (S_min, S_max) with 1 <= S_min <= S_max, got {(smin, smax)}")
        if smin > self.sizes.max():
            raise ValueError(f"no stack has {smin} or more frames (largest: {int(self.sizes.max())})")
        self.stack_size = (smin, min(smax, int(self.sizes.max())))
        self.seed = int(seed)
        self.epoch_size = epoch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]

    def make(self, index: int) -> dict[str, torch.Tensor]:
        """Batch number ``index`` of the current epoch."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFFFFFF, self.epoch, int(index)])
        s = int(rng.integers(self.stack_size[0], self.stack_size[1] + 1))
        candidates = np.nonzero(self.sizes >= s)[0]
        picks = rng.choice(candidates, size=self.batch_size, replace=True)
        items = [_subsample_frames(self.dataset[int(j)], s, rng) for j in picks]
        return collate_stacks(items)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in _index_stream(self.epoch_size):
            yield self.make(i)


def collate_stacks(items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into a batch: ``images (B, S, 3, H, W)``, ``focus_m (B, S)``, ``depth (B, 1, H, W)``,
    ``aif (B, 3, H, W)``.

    Raises ``ValueError`` when the items differ in stack size, crop size or keys.
    """
    if not items:
        raise ValueError("cannot collate an empty list")
    keys = set(items[0])
    for k, it in enumerate(items):
        if set(it) != keys:
            raise ValueError(f"item {k} has keys {sorted(it)}, item 0 has {sorted(keys)}")
        if it["images"].shape != items[0]["images"].shape:
            raise ValueError(
                f"item {k} has images {tuple(it['images'].shape)}, item 0 {tuple(items[0]['images'].shape)}: "
                "a batch needs one stack size and crop size (draw S per batch, see model.data)"
            )
    return {key: torch.stack([it[key] for it in items]) for key in items[0]}


# ----------------------------------------------------------------------------- the trainer's entry point


def build_training_data(
    kind: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    lens: LensProfile,
    focus_m: Sequence[float],
    focus_mode: str = "fixed",
    focus_jitter: float = 0.0,
    stack_size: tuple[int, int] | None = None,
    crop: int | tuple[int, int] = 128,
    noise: float | SensorNoise = 0.01,
    batch_size: int = 8,
    seed: int = 0,
    max_psf_radius: int | None = 24,
    scene_near_m: float | None = None,
    scene_far_m: float | None = None,
    working_range_m: tuple[float, float] | None = None,
    epoch_size: int | None = None,
    lens_sampling: LensSampling | None = None,
    weak_texture_prob: float = 0.0,
    disc_prob: float = 0.0,
    vignetting: float = 0.0,
    psf_mix: Sequence[float] | None = None,
    psf_beta_range: tuple[float, float] = (2.0, 8.0),
    psf_min_sigma_px: float = 0.0,
    breathing: float = 0.0,
    photo_dir: str | os.PathLike[str] | None = None,
) -> IterableDataset:
    """The stream of training batches for ``kind`` = ``"synthetic"``, ``"rgbd"`` or ``"folder"``.

    Returns an ``IterableDataset`` yielding batch dicts (module docstring); use it with
    ``DataLoader(ds, batch_size=None, num_workers=...)``. ``noise`` is a :class:`SensorNoise` or a level
    (:meth:`SensorNoise.from_level`: standard deviation at mid-grey). ``scene_near_m`` / ``scene_far_m``
    override either end of the default scene depth range. ``lens_sampling`` draws a lens and focus set per
    batch (lens-aware training, see :class:`SynthConfig`). For ``"folder"``: in ``"fixed"`` focus mode the
    frames nearest ``focus_m`` are used; in ``"bins"`` mode all frames, ``stack_size`` frames drawn one
    per bin; noise and scene ranges do not apply (the data are real). ``disc_prob`` ... ``photo_dir``: see
    :class:`SynthConfig` (rendered kinds only).
    """
    crop_hw = (int(crop), int(crop)) if isinstance(crop, (int, np.integer)) else _pair(crop, "crop", int)
    if kind == "folder":
        if data_dir is None:
            raise ValueError("folder data needs data_dir")
        frames: Literal["all"] | Sequence[float] = list(focus_m) if focus_mode == "fixed" else "all"
        ds = FolderStacks(data_dir, lens, crop_hw, frames=frames, augment=True, seed=seed)
        return RandomBatches(ds, batch_size, stack_size, seed=seed, epoch_size=epoch_size)
    if kind not in ("synthetic", "rgbd"):
        raise ValueError(f"data kind must be synthetic, rgbd or folder, got {kind!r}")
    nz = noise if isinstance(noise, SensorNoise) else SensorNoise.from_level(float(noise))
    cfg = SynthConfig(
        lens=lens,
        crop_hw=crop_hw,
        focus_m=tuple(focus_m),
        focus_mode=focus_mode,  # type: ignore[arg-type]
        focus_jitter=focus_jitter,
        stack_size=stack_size,
        working_range_m=working_range_m,
        noise=nz,
        batch_size=batch_size,
        epoch_size=epoch_size,
        seed=seed,
        max_psf_radius=max_psf_radius,
        lens_sampling=lens_sampling,
        weak_texture_prob=weak_texture_prob,
        disc_prob=disc_prob,
        vignetting=vignetting,
        psf_mix=tuple(psf_mix) if psf_mix is not None else None,  # type: ignore[arg-type]
        psf_beta_range=psf_beta_range,
        psf_min_sigma_px=psf_min_sigma_px,
        breathing=breathing,
        photo_dir=None if photo_dir is None else str(photo_dir),
    )
    if scene_near_m is not None or scene_far_m is not None:
        lo, hi = cfg.scene_range_m  # type: ignore[misc]
        cfg = replace(cfg, scene_range_m=(scene_near_m if scene_near_m is not None else lo, scene_far_m if scene_far_m is not None else hi))
    if kind == "rgbd":
        if data_dir is None:
            raise ValueError("rgbd data needs data_dir")
        return RGBDStacks(data_dir, cfg)
    return SyntheticStacks(cfg)
