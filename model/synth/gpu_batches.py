"""Synthetic training batches made and rendered on the training device, in PyTorch (``data: gpu_synthetic``).

:class:`DeviceBatches` is the device-side twin of :class:`model.data.SyntheticStacks`: from the same
:class:`model.data.SynthConfig` it makes the same kind of batch, with the same keys, shapes and dtypes
(``images (B, S, 3, H, W)``, ``focus_m (B, S)``, ``depth (B, 1, H, W)`` metres, ``aif (B, 3, H, W)``; ``k (B,)``
pixels per dioptre and ``lens (B, 3)`` float64 with ``lens_sampling``), but every per-pixel step runs as
batched tensor operations on one ``torch.device``: no DataLoader workers, no NumPy images, no copies to the
GPU. On a GPU this removes the CPU rendering that held training at 37 stacks/s.

What a batch is made of (the semantics of :func:`model.synth.scenes.random_scene` and
:mod:`model.synth.textures`, drawn for the whole batch at once):

- **lens and focus** as :class:`model.data.SyntheticStacks` draws them: :func:`model.lens_sampling.draw_lens_and_focus`
  per batch (lens-aware training: its scene range, including the far- and near-scene shares), else
  ``config.lens`` with :meth:`SynthConfig.draw_focus` per stack and ``config.scene_range_m``.
- **background**: a plane in inverse depth (usually in the far half of the inverse range; slanted half of
  the time, :func:`model.synth.scenes._slant`), and with probability :data:`FOLD_PROB` a second plane that
  meets it along a random line (a wall meeting a floor or another wall: continuous depth, a change of slope
  and texture).
- **foreground objects**: ``config.n_objects`` of them, ellipses, rotated rectangles, irregular blobs and thin
  bars (1.5-4 px wide: thin structures), each a plane (slanted half of the time) with its own texture, drawn
  over what is behind it only where it is nearer (z-buffer occlusion).
- **textures**: half of them crops of the scikit-image training photographs
  (:func:`model.synth.textures.available_photos`, with ``config.photo_dir``'s photographs where the installed
  :class:`SynthConfig` has that setting; loaded once and kept on the device; each photograph equally likely; random zoom 0.35-1,
  flips and transposition; grey ones through a random colour ramp half of the time), half procedural
  (multi-scale value noise from upsampled random lattices, stripes, checkers, blobs; sometimes modulated by
  noise; coloured through a ramp or per channel). ``config.weak_texture_prob`` cuts a surface's contrast to
  3-30 %.
- **augmentation** (``config.augment``): per-stack channel gains and brightness. The scene draw is already
  symmetric under flips and 90-degree turns (slant directions uniform in angle, photo crops flipped and
  transposed at random), so no geometric augmentation is applied.
- **vignetting** (``config.vignetting``): :func:`model.synth.frame.vignette`'s law, strength uniform in
  ``[0, vignetting]`` about a random centre in the crop's middle half (as :mod:`model.data`).
- **rendering**: :func:`model.render.rerender_stack` (the training renderer, depth clipped into the
  working range), then :meth:`model.synth.noise.SensorNoise.apply_torch`. Batches drawn for the layered
  renderer (``config.disc_prob`` / ``psf_mix``: disc or generalised Gaussian, ``psf_min_sigma_px``) are rendered
  by :func:`model.data.render_batch_layered` on the CPU (NumPy): that renderer has no device form, so those
  batches are slow (a warning says so). Residual focus breathing (``config.breathing``) is not applied on the
  device path (a warning says so).

**Seeding.** Batch ``index`` of epoch ``e`` is a deterministic function of ``(config.seed, e, index)`` and the
device type: the per-batch and per-surface parameters come from ``numpy.random.default_rng([seed, e, index])``
on the host, every random image (lattices, noise) from a ``torch.Generator`` on the device seeded from it.
The same index gives the same batch on the same kind of device; CPU and CUDA give different batches.

Example::

    gen = DeviceBatches(SynthConfig(lens, crop_hw=(128, 128), batch_size=16), torch.device("cuda"))
    batch = gen.make(0)          # dict of tensors on the GPU
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from model.data import SynthConfig
from model.lens_sampling import draw_lens_and_focus
from model.optics import blur_per_dioptre_px

__all__ = ["DeviceBatches", "PhotoBank", "upload", "FOLD_PROB", "PHOTO_PROB", "SLANT_PROB"]

log = logging.getLogger(__name__)

#: probability that a surface (background or object) is slanted, as :func:`model.synth.scenes.random_scene`
SLANT_PROB = 0.5
#: probability that a texture is a photograph crop, as :func:`model.synth.textures.random_texture`
PHOTO_PROB = 0.5
#: probability that the background has a second plane meeting it along a line (a fold)
FOLD_PROB = 0.3
#: foreground shape kinds and their probabilities: ellipse, rotated rectangle, irregular blob, thin bar
_SHAPE_PROBS = (0.3, 0.3, 0.25, 0.15)
#: procedural patterns, drawn uniformly (value noise twice as often, as model.synth.textures)
_PATTERNS = ("noise", "noise", "stripes", "checker", "blobs")
_MAX_DISCS = 60
#: SynthConfig settings (if the installed model.data has them) that the device path does not render, with their "off" value
_NOT_ON_DEVICE = {"breathing": 0.0}
_MAX_STOPS = 4


def upload(a: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Host values ``a`` (array-like) as a tensor on ``device``. To CUDA through pinned memory without blocking, so
    that the many small parameter uploads of a batch do not each wait for the GPU (a pageable copy synchronises)."""
    t = torch.as_tensor(np.array(a), dtype=dtype)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t if device.type == "cpu" else t.to(device)


def _seed_pair(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, int(epoch), int(index)])


# ----------------------------------------------------------------------------- photographs on the device


class PhotoBank:
    """Photographs held on a device for random crops (bilinear, gathered from one flat float16 buffer).

    Every photo is stored at full resolution and at half resolution (``cv2.INTER_AREA``): a crop that
    shrinks by more than 1.5x is read from the half-resolution copy, so that bilinear sampling does not
    alias much (:func:`model.synth.textures.photo_texture` resizes by area). float16 keeps 8-bit photographs
    exact to a fraction of a level and halves the memory (the scikit-image training set: about 40 MB).

    Args:
        names: photographs for :func:`model.synth.textures.load_photo`.
        device: where the pixels live.
        files: image files (:func:`model.synth.textures.load_photo_file`, e.g. ``SynthConfig.photo_dir``'s
            photographs from ``folder_photos``), used beside ``names``.
    """

    def __init__(self, names: Sequence[str], device: torch.device, files: Sequence[str] = ()) -> None:
        import cv2

        from model.synth import textures

        self.names = tuple(names) + tuple(files)
        if not self.names:
            raise ValueError("PhotoBank needs at least one photograph")
        self.device = torch.device(device)
        images = [textures.load_photo(n) for n in names] + [textures.load_photo_file(f) for f in files]
        chunks, offsets, sizes, grey = [], [], [], []
        pos = 0
        for level in (0, 1):
            for img in images:
                img = np.asarray(img, np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
                if level == 0:
                    grey.append(bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])))
                else:
                    h, w = img.shape[:2]
                    img = cv2.resize(np.ascontiguousarray(img), (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
                h, w = img.shape[:2]
                chunks.append(torch.from_numpy(np.array(img, np.float16).reshape(-1, 3)))
                offsets.append(pos)
                sizes.append((h, w))
                pos += h * w
        n = len(images)
        self.pixels = torch.cat(chunks).to(self.device)  # (N, 3) float16
        self.offset = np.asarray(offsets, np.int64).reshape(2, n)
        self.hw = np.asarray(sizes, np.int64).reshape(2, n, 2)
        self.grey = np.asarray(grey, bool)

    def draw(self, rng: np.random.Generator, n: int, windows: np.ndarray) -> dict[str, np.ndarray]:
        """Host-side parameters of ``n`` crops: photo, zoom, window, flips (``windows (n, 4)``: x0, y0, w, h px)."""
        photo = rng.integers(len(self.names), size=n)
        swap = rng.random(n) < 0.5
        zoom = np.exp(rng.uniform(math.log(0.35), math.log(1.0), n))
        flip_x = rng.random(n) < 0.5
        flip_y = rng.random(n) < 0.5
        ph, pw = self.hw[0, photo, 0].astype(np.float64), self.hw[0, photo, 1].astype(np.float64)
        oh, ow = np.where(swap, pw, ph), np.where(swap, ph, pw)  # the photo as oriented for the crop
        ww, wh = windows[:, 2].astype(np.float64), windows[:, 3].astype(np.float64)
        ch, cw = wh / zoom, ww / zoom
        fit = np.minimum(1.0, np.minimum(oh / ch, ow / cw))
        ch, cw = ch * fit, cw * fit
        y0 = rng.uniform(0.0, 1.0, n) * (oh - ch)
        x0 = rng.uniform(0.0, 1.0, n) * (ow - cw)
        colour = self.grey[photo] & (rng.random(n) < 0.5)
        return dict(photo=photo, swap=swap, flip_x=flip_x, flip_y=flip_y, x0=x0, y0=y0, cw=cw, ch=ch,
                    windows=windows.astype(np.float64), colour=colour)

    def sample(self, p: dict[str, np.ndarray], h: int, w: int) -> torch.Tensor:
        """The crops ``p`` (from :meth:`draw`) as ``(n, 3, h, w)`` float32 on the device."""
        dev = self.device
        n = len(p["photo"])
        level = ((p["ch"] / p["windows"][:, 3]) > 1.5).astype(np.int64)  # shrinking crops read the half-size copy
        scale = np.where(level == 1, 0.5, 1.0)
        ph = self.hw[level, p["photo"], 0]
        pw = self.hw[level, p["photo"], 1]
        off = self.offset[level, p["photo"]]

        def col(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return upload(a, dtype, dev).view(n, 1, 1)

        xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w) + 0.5
        ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1) + 0.5
        win = p["windows"]
        a = (xs - col(win[:, 0])) / col(win[:, 2])  # 0..1 across the texture's window
        b = (ys - col(win[:, 1])) / col(win[:, 3])
        a = torch.where(col(p["flip_x"], torch.bool), 1.0 - a, a)
        b = torch.where(col(p["flip_y"], torch.bool), 1.0 - b, b)
        # oriented-photo coordinates (pixel centres at integers), then the level's pixels
        r = (col(p["y0"]) + b * col(p["ch"])) * col(scale) - 0.5
        c = (col(p["x0"]) + a * col(p["cw"])) * col(scale) - 0.5
        swap = col(p["swap"], torch.bool)
        pr, pc = torch.where(swap, c, r), torch.where(swap, r, c)
        hmax, wmax = col(ph - 1), col(pw - 1)
        pr = torch.minimum(pr.clamp(min=0.0), hmax)
        pc = torch.minimum(pc.clamp(min=0.0), wmax)
        r0, c0 = pr.floor(), pc.floor()
        fr, fc = (pr - r0).unsqueeze(-1), (pc - c0).unsqueeze(-1)
        r1, c1 = torch.minimum(r0 + 1, hmax), torch.minimum(c0 + 1, wmax)
        base = col(off, torch.int64)
        stride = col(pw, torch.int64)
        r0, r1, c0, c1 = (t.long() for t in (r0, r1, c0, c1))

        def at(rr: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
            return self.pixels[(base + rr * stride + cc).reshape(-1)].view(n, h, w, 3).float()

        top = at(r0, c0) * (1 - fc) + at(r0, c1) * fc
        bot = at(r1, c0) * (1 - fc) + at(r1, c1) * fc
        return (top * (1 - fr) + bot * fr).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=4)
def _photo_bank(names: tuple[str, ...], files: tuple[str, ...], device: str) -> PhotoBank:
    """One :class:`PhotoBank` per photo set and device for the process (read-only once built)."""
    return PhotoBank(names, torch.device(device), files)


# ----------------------------------------------------------------------------- procedural textures


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Each image of ``x (n, ...)`` rescaled to fill ``[0, 1]``."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.amin(1).view(-1, *([1] * (x.dim() - 1)))
    hi = flat.amax(1).view(-1, *([1] * (x.dim() - 1)))
    return (x - lo) / (hi - lo).clamp(min=1e-6)


def _lattice_cells(h: int, w: int) -> list[int]:
    """Cells across the longer side of the value-noise lattices: 2, 4, 8, ... up to that side."""
    side = max(h, w)
    out, c = [], 2
    while c <= side:
        out.append(c)
        c *= 2
    return out or [2]


def _value_noise(gen: torch.Generator, weights: np.ndarray, h: int, w: int, device: torch.device) -> torch.Tensor:
    """Value noise ``(n, h, w)`` in ``[0, 1]``: ``sum_k weights[:, k] * bicubic(random lattice k)``, normalised.

    Lattice ``k`` has ``2 ** (k + 1)`` cells across the longer side (:func:`_lattice_cells`); ``weights (n, K)``
    are the octave amplitudes of each image (zero: octave unused).
    """
    n = weights.shape[0]
    side = max(h, w)
    out = torch.zeros(n, h, w, device=device)
    wt = upload(weights, torch.float32, device)
    for k, cells in enumerate(_lattice_cells(h, w)):
        if k >= weights.shape[1] or not np.any(weights[:, k]):
            continue
        gh = max(2, int(math.ceil(cells * h / side)) + 1)
        gw = max(2, int(math.ceil(cells * w / side)) + 1)
        grid = torch.rand((n, 1, gh, gw), generator=gen, device=device)
        up = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)[:, 0]
        out.add_(up * wt[:, k].view(n, 1, 1))
    return _normalise(out)


def _octave_weights(first: np.ndarray, octaves: np.ndarray, persistence: np.ndarray, n_levels: int) -> np.ndarray:
    """Amplitudes ``persistence ** (k - first)`` for lattices ``first <= k < first + octaves`` (``(n, n_levels)``)."""
    k = np.arange(n_levels)[None, :]
    first, octaves, persistence = (np.asarray(v, np.float64)[:, None] for v in (first, octaves, persistence))
    on = (k >= first) & (k < first + octaves)
    return np.where(on, persistence ** np.maximum(k - first, 0), 0.0)


def _colourise(g: torch.Tensor, stops: np.ndarray, colours: np.ndarray) -> torch.Tensor:
    """Grey ``g (n, h, w)`` in ``[0, 1]`` through piecewise-linear colour ramps -> ``(n, 3, h, w)``.

    ``stops (n, 4)`` ascending from 0 to 1 (padded with 1), ``colours (n, 4, 3)`` (padded with the last colour).
    """
    n, h, w = g.shape
    dev = g.device
    st = upload(stops, torch.float32, dev)
    co = upload(colours, torch.float32, dev)
    flat = g.reshape(n, -1).contiguous()
    idx = torch.searchsorted(st, flat, right=True).clamp(1, _MAX_STOPS - 1)
    s_lo, s_hi = st.gather(1, idx - 1), st.gather(1, idx)
    t = ((flat - s_lo) / (s_hi - s_lo).clamp(min=1e-6)).clamp(0.0, 1.0).unsqueeze(-1)
    c_lo = co.gather(1, (idx - 1).unsqueeze(-1).expand(n, flat.shape[1], 3))
    c_hi = co.gather(1, idx.unsqueeze(-1).expand(n, flat.shape[1], 3))
    rgb = c_lo + t * (c_hi - c_lo)
    return rgb.view(n, h, w, 3).permute(0, 3, 1, 2).contiguous()


def _draw_ramps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random colour ramps of 2-4 colours (as :func:`model.synth.textures.colourise`), padded to 4 stops."""
    count = rng.integers(2, _MAX_STOPS + 1, size=n)
    stops = np.sort(rng.random((n, _MAX_STOPS)), axis=1)
    colours = rng.random((n, _MAX_STOPS, 3))
    contrast = rng.random(n) < 0.5  # a dark and a bright end
    for i in range(n):
        m = int(count[i])
        stops[i, 0] = 0.0
        stops[i, m - 1 :] = 1.0
        stops[i, 1 : m - 1] = np.sort(stops[i, 1 : m - 1])
        if contrast[i]:
            colours[i, 0] *= 0.3
            colours[i, m - 1] = 0.6 + 0.4 * colours[i, m - 1]
        colours[i, m:] = colours[i, m - 1]
    return stops, colours


class _Procedural:
    """Batched procedural textures: the patterns of :mod:`model.synth.textures`, on a device."""

    def __init__(self, h: int, w: int, device: torch.device) -> None:
        self.h, self.w, self.device = h, w, device
        self.n_levels = len(_lattice_cells(h, w))
        self.yy, self.xx = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")

    def _col(self, a: Any) -> torch.Tensor:
        return upload(a, torch.float32, self.device).view(-1, 1, 1)

    def noise(self, rng: np.random.Generator, gen: torch.Generator, n: int, octaves: Any, base_cells: Any,
              persistence: Any) -> torch.Tensor:
        first = np.clip(np.round(np.log2(np.broadcast_to(np.asarray(base_cells, np.float64), (n,)) / 2.0)), 0, self.n_levels - 1)
        wts = _octave_weights(first, np.broadcast_to(octaves, (n,)), np.broadcast_to(persistence, (n,)), self.n_levels)
        return _value_noise(gen, wts, self.h, self.w, self.device)

    def rich_noise(self, rng: np.random.Generator, gen: torch.Generator, n: int) -> torch.Tensor:
        return self.noise(rng, gen, n, 8, rng.uniform(2.0, 8.0, n), rng.uniform(0.55, 0.9, n))

    def stripes(self, rng: np.random.Generator, gen: torch.Generator, n: int) -> torch.Tensor:
        theta = rng.uniform(0, np.pi, n)
        period = np.exp(rng.uniform(np.log(3.0), np.log(30.0), n))
        warp = np.where(rng.random(n) < 0.5, rng.uniform(1, 6, n), 0.0)
        shift = rng.uniform(0, 2 * np.pi, n)
        square = rng.random(n) < 0.5
        phase = (self.xx * self._col(np.cos(theta)) + self.yy * self._col(np.sin(theta))) * self._col(2 * np.pi / period)
        phase = phase + self._col(warp) * (self.noise(rng, gen, n, 2, 2.0, 0.6) - 0.5)
        s = torch.sin(phase + self._col(shift))
        s = torch.where(self._col(square) > 0, torch.sign(s), s)
        return 0.5 + 0.5 * s

    def checker(self, rng: np.random.Generator, gen: torch.Generator, n: int) -> torch.Tensor:
        theta = rng.uniform(0, np.pi / 2, n)
        size = np.exp(rng.uniform(np.log(3.0), np.log(24.0), n))
        c, s, sz = self._col(np.cos(theta)), self._col(np.sin(theta)), self._col(size)
        u = (self.xx * c + self.yy * s) / sz
        v = (-self.xx * s + self.yy * c) / sz
        k = sz * 1.5
        su = torch.tanh(k * torch.sin(np.pi * u) / np.pi)
        sv = torch.tanh(k * torch.sin(np.pi * v) / np.pi)
        return 0.5 + 0.5 * su * sv

    def blobs(self, rng: np.random.Generator, gen: torch.Generator, n: int) -> torch.Tensor:
        """Discs of many sizes (10-60, painted in order, anti-aliased edges) over half-strength value noise."""
        h, w = self.h, self.w
        bg = 0.5 * self.noise(rng, gen, n, 3, 3.0, 0.6)
        count = rng.integers(10, _MAX_DISCS + 1, size=n)
        rmax = max(2.0, 0.15 * max(h, w))
        r = np.exp(rng.uniform(np.log(1.5), np.log(rmax), (n, _MAX_DISCS)))
        r = np.where(np.arange(_MAX_DISCS)[None, :] < count[:, None], r, -1.0)  # unused discs cover nothing
        cx, cy = rng.uniform(0, w, (n, _MAX_DISCS)), rng.uniform(0, h, (n, _MAX_DISCS))
        val = rng.random((n, _MAX_DISCS))

        def t(a: np.ndarray) -> torch.Tensor:
            return upload(a, torch.float32, self.device)

        xs = torch.arange(w, device=self.device, dtype=torch.float32) + 0.5
        ys = torch.arange(h, device=self.device, dtype=torch.float32) + 0.5
        dx2 = (xs.view(1, 1, w) - t(cx).unsqueeze(-1)) ** 2  # (n, D, w)
        dy2 = (ys.view(1, 1, h) - t(cy).unsqueeze(-1)) ** 2  # (n, D, h)
        # coverage with one pixel of anti-aliasing, (n, D, h, w): separable squared distances, one sqrt
        alpha = (dy2.unsqueeze(-1) + dx2.unsqueeze(-2)).sqrt_().neg_().add_(t(r + 0.5).view(n, _MAX_DISCS, 1, 1)).clamp_(0.0, 1.0)
        out = bg.clone()
        val = t(val).view(n, _MAX_DISCS, 1, 1)
        for d in range(int(count.max())):  # painter's order
            out.add_(alpha[:, d] * (val[:, d] - out))
        return out.clamp(0.0, 1.0)

    def make(self, rng: np.random.Generator, gen: torch.Generator, n: int) -> torch.Tensor:
        """``n`` procedural textures ``(n, 3, h, w)`` in ``[0, 1]`` (:func:`model.synth.textures.procedural_texture`)."""
        h, w, dev = self.h, self.w, self.device
        kind = rng.integers(len(_PATTERNS), size=n)
        modulate = rng.random(n) < 0.3
        per_channel = rng.random(n) < 0.2
        g = torch.empty(n, h, w, device=dev)
        for name in ("noise", "stripes", "checker", "blobs"):
            sel = np.nonzero(np.array([_PATTERNS[k] == name for k in kind], bool))[0]
            if len(sel):
                fn = self.rich_noise if name == "noise" else getattr(self, name)
                g[upload(sel, torch.int64, dev)] = fn(rng, gen, len(sel))
        sel = np.nonzero(modulate)[0]
        if len(sel):
            idx = upload(sel, torch.int64, dev)
            m = self.noise(rng, gen, len(sel), rng.integers(2, 6, len(sel)), 4.0, 0.6)
            g[idx] = _normalise(g[idx] * (0.4 + 0.6 * m))
        stops, colours = _draw_ramps(rng, n)
        out = _colourise(g, stops, colours)
        sel = np.nonzero(per_channel)[0]
        if len(sel):
            idx = upload(sel, torch.int64, dev)
            k = len(sel)
            rgb = self.noise(rng, gen, 3 * k, np.repeat(rng.integers(3, 7, k), 3), 4.0, 0.6).view(k, 3, h, w)
            out[idx] = 0.5 * rgb + 0.5 * g[idx].unsqueeze(1)
        return out.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- the batch generator


class DeviceBatches:
    """Synthetic training batches made and rendered on ``device`` (see the module docstring).

    Args:
        config: the same :class:`model.data.SynthConfig` :class:`model.data.SyntheticStacks` takes (the trainer
            builds it in ``Trainer._dataset``); ``lens_sampling`` may be set or not.
        device: where the batches are made and returned.
        per_frame_radius: size each frame's PSF window from its own largest blur
            (:func:`model.render.rerender_stack`); ``None``: on the CPU only (where the work is compute-bound;
            on an accelerator one window for the batch costs fewer kernel launches). The result is the same
            within the window either way.
        psf: a renderer for :func:`model.render.rerender_stack`'s ``psf=`` (e.g. ``export.psf_ext.gauss_psf_cuda``),
            or ``None`` for the PyTorch renderer.
        photos: photographs to crop (default: :func:`model.synth.textures.available_photos` ``("train")``).
    """

    def __init__(
        self,
        config: SynthConfig,
        device: torch.device | str = "cpu",
        *,
        per_frame_radius: bool | None = None,
        psf: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
        photos: Sequence[str] | None = None,
    ) -> None:
        from model.synth.textures import available_photos

        if not isinstance(config, SynthConfig):
            raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
        self.config = config
        self.device = torch.device(device)
        self.epoch = 0
        self.per_frame_radius = self.device.type == "cpu" if per_frame_radius is None else bool(per_frame_radius)
        self.psf = psf
        names = tuple(available_photos("train") if photos is None else photos)
        files: tuple[str, ...] = ()
        if getattr(config, "photo_dir", None):  # a model.data with extra training photographs
            from model.synth.textures import folder_photos  # type: ignore[attr-defined]

            files = tuple(folder_photos(config.photo_dir))  # type: ignore[attr-defined]
        self.photos = _photo_bank(names, files, str(self.device)) if names or files else None
        h, w = config.crop_hw
        self._proc = _Procedural(h, w, self.device)
        self.yy, self.xx = self._proc.yy, self._proc.xx
        layered = sum(config.psf_probs)
        if layered > 0:
            log.warning("%.0f %% of batches are drawn for the layered renderer (disc_prob / psf_mix): they are rendered on "
                        "the CPU (model.synth.layered has no device form), far slower than the device path", 100 * layered)
        ignored = [f"{k}={getattr(config, k)!r}" for k, off in _NOT_ON_DEVICE.items() if getattr(config, k, off) not in (off, None)]
        if ignored:
            log.warning("DeviceBatches does not render %s: ignored on the device path (use data: synthetic for them)",
                        ", ".join(ignored))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (part of every batch's seed)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        i = 0
        while self.config.epoch_size is None or i < self.config.epoch_size:
            yield self.make(i)
            i += 1

    # ------------------------------------------------------------------ pieces

    def _t(self, a: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return upload(a, dtype, self.device)

    def _textures(self, rng: np.random.Generator, gen: torch.Generator, windows: np.ndarray, weak_prob: float) -> torch.Tensor:
        """Textures for surfaces whose windows are ``windows (n, 4)`` (x0, y0, w, h px): ``(n, 3, H, W)``."""
        h, w = self.config.crop_hw
        n = len(windows)
        photo = (rng.random(n) < PHOTO_PROB) if self.photos is not None else np.zeros(n, bool)
        out = torch.empty(n, 3, h, w, device=self.device)
        sel = np.nonzero(photo)[0]
        if len(sel):
            p = self.photos.draw(rng, len(sel), windows[sel])  # type: ignore[union-attr]
            tex = self.photos.sample(p, h, w)  # type: ignore[union-attr]
            recol = np.nonzero(p["colour"])[0]
            if len(recol):
                stops, colours = _draw_ramps(rng, len(recol))
                ri = self._t(recol, torch.int64)
                tex[ri] = _colourise(tex[ri, 0], stops, colours)
            out[self._t(sel, torch.int64)] = tex
        sel = np.nonzero(~photo)[0]
        if len(sel):
            out[self._t(sel, torch.int64)] = self._proc.make(rng, gen, len(sel))
        if weak_prob > 0:
            weak = rng.random(n) < weak_prob
            factor = np.where(weak, rng.uniform(0.03, 0.3, n), 1.0)
            if weak.any():
                mean = out.mean(dim=(2, 3), keepdim=True)
                out = (mean + (out - mean) * self._t(factor).view(n, 1, 1, 1)).clamp(0.0, 1.0)
        return out

    def _scenes(self, rng: np.random.Generator, gen: torch.Generator, b: int, scene_range: tuple[float, float]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``b`` scenes in ``scene_range`` metres: ``aif (b, 3, H, W)`` in [0, 1], depth ``(b, 1, H, W)`` metres."""
        from model.synth.scenes import _slant

        cfg = self.config
        h, w = cfg.crop_hw
        near, far = float(scene_range[0]), float(scene_range[1])
        lo, hi = 1.0 / far, 1.0 / near
        xx, yy = self.xx, self.yy
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0

        # background plane: usually in the far half of the inverse range, slanted half of the time
        far_half = rng.random(b) < 0.7
        c = np.where(far_half, rng.uniform(lo, lo + 0.5 * (hi - lo), b), rng.uniform(lo, hi, b))
        slant = rng.random(b) < SLANT_PROB
        grads = np.array([_slant(rng, h, w, c[i], lo, hi, max_frac=0.6) if slant[i] else (0.0, 0.0) for i in range(b)]).reshape(b, 2)

        def col(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return self._t(a, dtype).view(b, 1, 1)

        inv = col(c) + col(grads[:, 0]) * (xx - cx) + col(grads[:, 1]) * (yy - cy)
        # a fold: a second plane meeting the first along a line, with its own slope and texture
        fold = rng.random(b) < FOLD_PROB
        px, py = rng.uniform(0.1, 0.9, b) * (w - 1), rng.uniform(0.1, 0.9, b) * (h - 1)
        psi = rng.uniform(0, 2 * np.pi, b)
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
        reach = np.max((corners[None, :, 0] - px[:, None]) * np.cos(psi)[:, None]
                       + (corners[None, :, 1] - py[:, None]) * np.sin(psi)[:, None], axis=1)
        g_fold = np.where(rng.random(b) < 0.5, -1.0, 1.0) * rng.uniform(0.2, 1.0, b) * 0.6 * (hi - lo) / np.maximum(reach, 1.0)
        dist = (xx - col(px)) * col(np.cos(psi)) + (yy - col(py)) * col(np.sin(psi))
        fold_region = (dist > 0) & col(fold, torch.bool)
        inv = torch.where(fold_region, inv + col(g_fold) * dist, inv).clamp(lo, hi)

        # foreground objects (host-side parameters, then one pass per object slot over the whole batch)
        n_lo, n_hi = int(cfg.n_objects[0]), int(cfg.n_objects[1])
        n_obj = rng.integers(n_lo, n_hi + 1, size=b) if n_hi > 0 else np.zeros(b, np.int64)
        slots = int(n_obj.max()) if b else 0
        objs = []
        windows = [np.tile([0.0, 0.0, w, h], (b, 1)), np.tile([0.0, 0.0, w, h], (int(fold.sum()), 1))]
        for j in range(slots):
            active = n_obj > j
            kind = rng.choice(len(_SHAPE_PROBS), size=b, p=_SHAPE_PROBS)
            bh = np.maximum(2, (h * rng.uniform(0.12, 0.6, b)).astype(np.int64))
            bw = np.maximum(2, (w * rng.uniform(0.12, 0.6, b)).astype(np.int64))
            y0 = rng.integers(-bh // 3, h - 2 * bh // 3 + 1).astype(np.float64)  # as random_scene places boxes
            x0 = rng.integers(-bw // 3, w - 2 * bw // 3 + 1).astype(np.float64)
            bar = kind == 3
            length = rng.uniform(0.3, 1.0, b) * max(h, w)
            width = rng.uniform(1.5, 4.0, b)
            # thin bars: anywhere in the frame, their box their bounding extent
            ocx = np.where(bar, rng.uniform(0, w - 1, b), x0 + (bw - 1) / 2.0)
            ocy = np.where(bar, rng.uniform(0, h - 1, b), y0 + (bh - 1) / 2.0)
            bw = np.where(bar, np.maximum(2, np.round(length)).astype(np.int64), bw)
            bh = np.where(bar, np.maximum(2, np.round(width)).astype(np.int64), bh)
            angle = np.where(kind == 0, 0.0, rng.uniform(0, np.pi, b))
            # half-axes: ellipses 0.6-1 of the box (axis-aligned, as random_scene's), rectangles 0.5-1 (rotated),
            # blobs the box, bars their length and width
            frac = np.select([kind == 0, kind == 1], [rng.uniform(0.6, 1.0, (b, 2)).T, rng.uniform(0.5, 1.0, (b, 2)).T], 1.0)
            shape_a = np.where(bar, length / 2.0, bw / 2.0 * frac[0])
            shape_b = np.where(bar, width / 2.0, bh / 2.0 * frac[1])
            harm = rng.uniform(0.0, 0.25, (b, 3))
            harm_phase = rng.uniform(0, 2 * np.pi, (b, 3))
            oc = rng.uniform(lo, hi, b)
            oslant = rng.random(b) < SLANT_PROB
            og = np.array([_slant(rng, int(bh[i]), int(bw[i]), oc[i], lo, hi, max_frac=0.25) if oslant[i] else (0.0, 0.0)
                           for i in range(b)]).reshape(b, 2)
            objs.append(dict(active=active, kind=kind, ocx=ocx, ocy=ocy, angle=angle, a=shape_a, b=shape_b, harm=harm,
                             harm_phase=harm_phase, oc=oc, og=og))
            tex_win = np.stack([ocx - (bw - 1) / 2.0, ocy - (bh - 1) / 2.0, bw, bh], 1).astype(np.float64)
            windows.append(tex_win[active])
        tex = self._textures(rng, gen, np.concatenate(windows, 0), cfg.weak_texture_prob)
        aif = tex[:b]
        n_fold = int(fold.sum())
        if n_fold:
            fold_tex = torch.zeros_like(aif)
            fold_tex[self._t(np.nonzero(fold)[0], torch.int64)] = tex[b : b + n_fold]
            aif = torch.where(fold_region.unsqueeze(1), fold_tex, aif)
        pos = b + n_fold

        for o in objs:
            act = o["active"]
            n_act = int(act.sum())
            dx, dy = xx - col(o["ocx"]), yy - col(o["ocy"])
            ca, sa = col(np.cos(o["angle"])), col(np.sin(o["angle"]))
            u, v = dx * ca + dy * sa, -dx * sa + dy * ca
            ea, eb = col(o["a"]), col(o["b"])
            ellipse = (u / ea) ** 2 + (v / eb) ** 2 <= 1.0
            rect = (u.abs() <= ea) & (v.abs() <= eb)
            un, vn = u / ea, v / eb
            phi = torch.atan2(vn, un)
            rad = torch.ones_like(phi)
            for k in range(3):
                rad = rad + col(o["harm"][:, k]) * torch.cos((k + 2) * phi + col(o["harm_phase"][:, k]))
            blob = torch.sqrt(un * un + vn * vn) <= 0.8 * rad
            kind = col(o["kind"], torch.int64)
            mask = torch.where(kind == 0, ellipse, torch.where(kind == 2, blob, rect)) & col(act, torch.bool)
            oinv = (col(o["oc"]) + col(o["og"][:, 0]) * dx + col(o["og"][:, 1]) * dy).clamp(lo, hi)
            vis = mask & (oinv > inv)
            inv = torch.where(vis, oinv, inv)
            otex = torch.zeros_like(aif)
            if n_act:
                otex[self._t(np.nonzero(act)[0], torch.int64)] = tex[pos : pos + n_act]
            aif = torch.where(vis.unsqueeze(1), otex, aif)
            pos += n_act
        depth = (1.0 / inv).clamp(near, far).unsqueeze(1)
        return aif.clamp(0.0, 1.0), depth

    def _vignette(self, rng: np.random.Generator, b: int) -> torch.Tensor:
        """Fall-off maps ``(b, 1, H, W)``: :func:`model.synth.frame.vignette` of a uniform image, strength uniform in
        ``[0, config.vignetting]`` about a centre in the crop's middle half (as :mod:`model.data`)."""
        from model.synth.frame import vignette

        h, w = self.config.crop_hw
        ones = np.ones((h, w), np.float32)
        maps = []
        for _ in range(b):
            v = rng.uniform(0.0, self.config.vignetting)
            cy, cx = rng.uniform(0.25, 0.75) * (h - 1), rng.uniform(0.25, 0.75) * (w - 1)
            maps.append(np.asarray(vignette(ones, v, centre=(cx, cy)), np.float32))
        return self._t(np.stack(maps)).unsqueeze(1)

    # ------------------------------------------------------------------ the batch

    @torch.no_grad()
    def make(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Batch (or item, when ``config.batch_size`` is ``None``) number ``index`` — deterministic, on the device."""
        from model.render import rerender_stack

        cfg = self.config
        rng = _seed_pair(cfg.seed, self.epoch if epoch is None else epoch, index)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(rng.integers(2**62)))
        b = cfg.batch_size or 1
        draw = None
        if cfg.lens_sampling is not None:
            draw = draw_lens_and_focus(rng, cfg.lens_sampling)
            lens, (near, far), scene_range = draw.lens, draw.working_range_m, draw.scene_range_m
            focus = np.tile(np.asarray(draw.focus_m, np.float64), (b, 1))
        else:
            smin, smax = cfg.stack_size  # type: ignore[misc]
            s = int(rng.integers(smin, smax + 1))
            lens, scene_range = cfg.lens, cfg.scene_range_m
            near, far = cfg.working_range_m  # type: ignore[misc]
            focus = np.stack([cfg.draw_focus(rng, s) for _ in range(b)])
        aif, depth = self._scenes(rng, gen, b, scene_range)  # type: ignore[arg-type]
        if cfg.augment:
            gains = rng.uniform(*cfg.gain_range, size=(b, 3)) * rng.uniform(*cfg.brightness_range, size=(b, 1))
            aif = (aif * self._t(gains).view(b, 3, 1, 1)).clamp(0.0, 1.0)
        if cfg.vignetting > 0:
            aif = aif * self._vignette(rng, b)
        render_depth = torch.nan_to_num(depth, nan=far).clamp(near, far)
        focus_t = self._t(focus)
        beta = self.config.draw_psf(rng)
        if beta is not None:
            from model.data import render_batch_layered

            images = render_batch_layered(aif.permute(0, 2, 3, 1).cpu().numpy(), render_depth[:, 0].cpu().numpy(),
                                          focus.astype(np.float32).astype(np.float64), lens, cfg.noise, rng, beta,
                                          cfg.psf_min_sigma_px).to(self.device)
        else:
            images, _ = rerender_stack(aif, render_depth, focus_t, lens, max_radius=cfg.max_psf_radius,
                                       per_frame_radius=self.per_frame_radius and self.psf is None, psf=self.psf)
            images = images.clamp(0.0, 1.0) if cfg.noise.is_zero else cfg.noise.apply_torch(images, gen)
        out = {
            "images": images.float().contiguous(),
            "focus_m": focus_t,
            "depth": depth.float(),
            "aif": aif.float().contiguous(),
        }
        if draw is not None:
            out["k"] = torch.full((b,), float(blur_per_dioptre_px(lens)), dtype=torch.float32, device=self.device)
            out["lens"] = upload([[lens.focal_length_m, lens.f_number, lens.pixel_pitch_m]] * b, torch.float64, self.device)
        if cfg.batch_size is None:
            out = {k: v[0] for k, v in out.items()}
        return out
