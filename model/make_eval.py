"""Write the held-out evaluation set: focal stacks with ground-truth depth, as focal-stack/1 folders.

Content nobody here trained on, rendered with the *evaluation* renderer (model.synth.layered: layered,
occlusion-aware, uniform-disc PSF, shot + read noise, 8-bit frames), not the training renderer:

  motorcycle_*   scikit-image's Middlebury 2014 Motorcycle RGB-D (skimage.data.stereo_motorcycle; depth
                 = 994.978 * 0.193001 / (disparity + 31.086) m, unknown where the disparity is not finite
                 or zero): the full view resized to --size, three crops of it, and the full view with
                 all depths scaled (a scaled copy of the scene) so that it sits at other focus distances.
  photo_*        the held-out photographs (model.synth.textures.HELD_OUT_PHOTOS) on a fronto-parallel
                 plane, a slanted plane, a fold (two planes) and a background plane with nearer cards.
  scene_*        procedural piecewise-planar scenes with held-out photographs only.

--tuning N writes a *tuning* set instead: N procedural scenes (tune_*) with the training textures only,
and (--tuning-photos K, default 3) K training photographs on the same four photo layouts (tune_photo_*),
rendered the same way. Choose inference settings (e.g. model.refine) on it, never on the held-out set.

Every stack folder holds frame_*.png, stack.json (focus distances, thin-lens numbers), depth.npy
(metres, 0 = unknown) and aif.png. An index eval_set.json lists the stacks and settings. Depths lie
in [0.7 x nearest focus, 1.7 x farthest focus] clipped to the working range (Motorcycle: its own
depths, scaled). Deterministic for a given --seed. The whole folder is written atomically.

usage:
  python -m model.make_eval --out data/eval
  python -m model.make_eval --out data/eval --lens my_lens.json --focus 0.3 0.5 1 2 --size 320x240
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# the Motorcycle RGB-D (NaN where the depth is unknown) and the crop-and-resize live in model.synth.rgbd
from model.synth.rgbd import crop_resize as _crop_resize
from model.synth.rgbd import motorcycle_rgbd

__all__ = ["MakeEvalConfig", "make_eval_set", "eval_scenes", "tuning_scenes", "motorcycle_rgbd", "main"]

DEFAULT_FOCUS = (1.0, 1.5, 2.5, 4.0, 6.0)
DEFAULT_LENS = Path(__file__).resolve().parent / "default" / "lens.json"


@dataclass
class MakeEvalConfig:
    """Settings of ``make_eval`` (the CLI's arguments)."""

    out: Path
    lens: Path = DEFAULT_LENS
    focus_m: tuple[float, ...] = DEFAULT_FOCUS
    size: tuple[int, int] | None = None  # (width, height); None: the lens's image_size
    noise: float = 0.005  # noise standard deviation at mid-grey (shot + read), see SensorNoise.from_level
    seed: int = 0
    limit: int | None = None  # write only the first N stacks (quick checks)
    bit_depth: int = 8
    overwrite: bool = False
    verbose: bool = False
    tuning: int | None = None  # write N training-split procedural scenes (a tuning set) instead
    tuning_photos: int = 3  # ... plus this many training photographs on every photo layout


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"size must be between 16 and 8192 pixels per side, got {text!r}")
    return w, h


def parse_args(argv: Sequence[str] | None = None) -> MakeEvalConfig:
    p = argparse.ArgumentParser(prog="python -m model.make_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (must be empty or absent unless --overwrite)")
    p.add_argument("--lens", type=Path, default=DEFAULT_LENS, help="lens/1 profile (default: the shipped NYUv2 lens)")
    p.add_argument("--focus", type=float, nargs="+", default=list(DEFAULT_FOCUS), metavar="M",
                   help="focus distances in metres (default: 1 1.5 2.5 4 6)")
    p.add_argument("--size", type=_parse_size, default=None, metavar="WxH",
                   help="image size; the lens's pixel pitch is rescaled (default: the lens's image_size)")
    p.add_argument("--noise", type=float, default=0.005, help="noise std at mid-grey (shot + read), 0 for none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="write only the first N stacks")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth of the frames")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--tuning", type=int, default=None, metavar="N",
                   help="write a tuning set of N procedural scenes with training textures instead of the held-out set")
    p.add_argument("--tuning-photos", type=int, default=3, metavar="K",
                   help="with --tuning: also K training photographs on each photo layout (plane, slant, fold, cards); default 3")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    cfg = MakeEvalConfig(out=a.out, lens=a.lens, focus_m=tuple(a.focus), size=a.size, noise=a.noise, seed=a.seed,
                         limit=a.limit, bit_depth=a.bit_depth, overwrite=a.overwrite, verbose=a.verbose,
                         tuning=a.tuning, tuning_photos=a.tuning_photos)
    return cfg


# ----------------------------------------------------------------------------- content


@dataclass
class EvalScene:
    """One evaluation scene before rendering: ``aif (H, W, 3)``, ``depth (H, W)`` metres (NaN unknown)."""

    name: str
    aif: Any
    depth: Any
    meta: dict[str, Any] = field(default_factory=dict)


def _photo(name: str, size: tuple[int, int]) -> Any:
    from model.synth.textures import load_photo

    return _crop_resize(load_photo(name), None, size)[0]


def _slanted(rng: Any, h: int, w: int, u_lo: float, u_hi: float, frac: tuple[float, float] = (0.5, 0.9)) -> Any:
    """Inverse depth of a random slanted plane spanning ``frac`` of ``[u_lo, u_hi]`` across the image."""
    import math

    from model.synth.scenes import inverse_depth_plane

    theta = rng.uniform(0, 2 * math.pi)
    gx, gy = math.cos(theta), math.sin(theta)
    reach = abs(gx) * (w - 1) / 2 + abs(gy) * (h - 1) / 2
    span = rng.uniform(*frac) * (u_hi - u_lo)
    centre = rng.uniform(u_lo + span / 2, u_hi - span / 2)
    mag = span / (2 * reach)
    return inverse_depth_plane(h, w, centre, gx * mag, gy * mag)


PHOTO_LAYOUTS: tuple[str, ...] = ("plane", "slant", "fold", "cards")
"""Depth layouts a photograph is placed on: a fronto-parallel plane, a slanted plane, a fold (two planes
meeting at a line) and a far slanted background with 2-3 nearer cards textured with the other photographs."""


def _photo_layout_scene(name: str, layout: str, photos: Sequence[str], size: tuple[int, int],
                        inv_range: tuple[float, float], depth_range: tuple[float, float], rng: Any,
                        prefix: str = "photo") -> EvalScene:
    """The photograph ``name`` on one of :data:`PHOTO_LAYOUTS`; cards take their texture from ``photos``.

    ``inv_range`` is ``(u_lo, u_hi)`` in dioptres, ``depth_range`` the ``(lo, hi)`` metres the depth is clipped to.
    """
    import cv2
    import numpy as np

    from model.synth.scenes import inverse_depth_plane
    from model.synth.textures import photo_texture

    w, h = size
    u_lo, u_hi = inv_range
    lo_m, hi_m = depth_range
    aif = _photo(name, size)
    if layout == "plane":
        inv = np.full((h, w), rng.uniform(u_lo, u_hi), np.float32)
    elif layout == "slant":
        inv = _slanted(rng, h, w, u_lo, u_hi)
    elif layout == "fold":
        axis = int(rng.integers(2))
        n = w if axis == 0 else h
        pos = np.abs(np.arange(n, dtype=np.float32) - rng.uniform(0.3, 0.7) * n) / n
        edge, apex = rng.uniform(u_lo, u_hi, 2)
        line = apex + (edge - apex) * pos / pos.max()
        inv = np.broadcast_to(line[None, :] if axis == 0 else line[:, None], (h, w)).astype(np.float32)
    elif layout == "cards":
        u_mid = u_lo + 0.4 * (u_hi - u_lo)
        inv = _slanted(rng, h, w, u_lo, u_mid, (0.2, 0.6))
        others = [p for p in photos if p != name] or [name]
        for _ in range(int(rng.integers(2, 4))):
            cw, ch = rng.uniform(0.25, 0.45) * w, rng.uniform(0.25, 0.45) * h
            cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
            mask = np.zeros((h, w), np.uint8)
            pts = cv2.boxPoints(((cx, cy), (cw, ch), rng.uniform(-30, 30)))
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
            u_card = rng.uniform(u_mid, u_hi)
            tilt = inverse_depth_plane(h, w, u_card, *(rng.uniform(-1, 1, 2) * 0.1 * (u_hi - u_lo) / max(w, h)))
            m = (mask > 0) & (tilt > inv)
            tex = photo_texture(rng, h, w, others[int(rng.integers(len(others)))])
            inv = np.where(m, tilt, inv)
            aif = np.where(m[..., None], tex, aif)
    else:
        raise ValueError(f"unknown layout {layout!r}; known: {PHOTO_LAYOUTS}")
    depth = np.clip(1.0 / np.clip(inv, u_lo, u_hi), lo_m, hi_m).astype(np.float32)
    return EvalScene(f"{prefix}_{name}_{layout}", aif.astype(np.float32), depth,
                     {"source": f"skimage.data.{name}", "layout": layout})


def tuning_scenes(size: tuple[int, int], focus_m: Sequence[float], working: tuple[float, float],
                  count: int, seed: int = 0, photos: int = 0) -> Iterator[Callable[[], EvalScene]]:
    """A tuning set, built only from *training* content (builders as in :func:`eval_scenes`):

    ``count`` procedural scenes (``tune_XX``), then the first ``photos`` training photographs on every one
    of :data:`PHOTO_LAYOUTS` (``tune_photo_<name>_<layout>``, the held-out set's photo layouts).
    """
    import numpy as np

    from model.synth.scenes import default_scene_range_m, random_scene
    from model.synth.textures import available_photos

    w, h = size
    fs = sorted(float(f) for f in focus_m)
    lo_m, hi_m = default_scene_range_m((fs[0], fs[-1]), working)

    def build(k: int) -> EvalScene:
        a, d = random_scene(np.random.default_rng([seed, 1000 + k]), h, w, lo_m, hi_m, split="train", n_objects=(2, 6))
        return EvalScene(f"tune_{k:02d}", a, d, {"source": "model.synth.scenes.random_scene(split='train')"})

    for k in range(count):
        yield (lambda k=k: build(k))
    names = list(available_photos("train"))[: max(0, int(photos))]
    j = 0
    for name in names:
        for layout in PHOTO_LAYOUTS:
            yield functools.partial(_photo_layout_scene, name, layout, names, size, (1.0 / hi_m, 1.0 / lo_m), (lo_m, hi_m),
                                    np.random.default_rng([seed, 2000 + j]), prefix="tune_photo")
            j += 1


def eval_scenes(size: tuple[int, int], focus_m: Sequence[float], working: tuple[float, float],
                seed: int = 0) -> Iterator[Callable[[], EvalScene]]:
    """The evaluation scenes, in order, as deferred builders (so ``--limit`` does not build the rest).

    Args:
        size: ``(width, height)`` pixels.
        focus_m: the focus distances (metres) the scenes are placed around.
        working: ``(near, far)`` metres; every depth is kept inside it.
        seed: base seed; scene ``k`` uses ``numpy.random.default_rng([seed, k])``.
    """
    import numpy as np

    from model.synth.scenes import default_scene_range_m
    from model.synth.textures import HELD_OUT_PHOTOS, available_photos

    w, h = size
    fs = sorted(float(f) for f in focus_m)
    lo_m, hi_m = default_scene_range_m((fs[0], fs[-1]), working)
    u_lo, u_hi = 1.0 / hi_m, 1.0 / lo_m
    near, far = working
    builders: list[Callable[[np.random.Generator], EvalScene]] = []

    # (a) Middlebury Motorcycle
    def moto(tag: str, frac: float = 1.0, centre: tuple[float, float] = (0.5, 0.5), scale: float = 1.0):
        def build(rng: np.random.Generator) -> EvalScene:
            rgb, depth = motorcycle_rgbd()
            a, d = _crop_resize(rgb, depth, size, frac, centre)
            d = d * np.float32(scale)
            d[np.isfinite(d)] = np.clip(d[np.isfinite(d)], near, far)
            return EvalScene(f"motorcycle_{tag}", a, d, {"source": "skimage.data.stereo_motorcycle", "crop": frac,
                                                          "centre": list(centre), "depth_scale": scale})
        return build

    builders.append(moto("full"))
    for k, (frac, c) in enumerate([(0.6, (0.3, 0.45)), (0.7, (0.7, 0.55)), (0.5, (0.5, 0.35))]):
        builders.append(moto(f"crop{k}", frac, c))
    _, mdepth = motorcycle_rgbd()
    dmin, dmed, dmax = (float(np.nanpercentile(mdepth, q)) for q in (1, 50, 99))
    picks = [fs[0], fs[len(fs) // 2], fs[-1]] if len(fs) >= 3 else fs
    scales: list[float] = []
    for f in picks:
        s = f / dmed
        s = min(max(s, near / dmin), far / dmax)  # keep the scaled scene inside the working range
        if abs(s - 1.0) > 0.1 and all(abs(s / t - 1) > 0.1 for t in scales):
            scales.append(s)
    for s in scales:
        builders.append(moto(f"scale{s:.2f}", scale=s))

    # (b) held-out photographs on planar layouts
    photos = [n for n in HELD_OUT_PHOTOS if n in available_photos("held_out")]
    for name in photos:
        for layout in PHOTO_LAYOUTS:
            builders.append(functools.partial(_photo_layout_scene, name, layout, photos, size, (u_lo, u_hi), (lo_m, hi_m),
                                              prefix="photo"))

    # (c) procedural layouts with held-out textures only
    def procedural(k: int):
        def build(rng: np.random.Generator) -> EvalScene:
            from model.synth.scenes import random_scene

            a, d = random_scene(rng, h, w, lo_m, hi_m, split="held_out", n_objects=(2, 6))
            return EvalScene(f"scene_{k:02d}", a, d, {"source": "model.synth.scenes.random_scene(split='held_out')"})
        return build

    for k in range(4):
        builders.append(procedural(k))

    for k, b in enumerate(builders):
        yield (lambda b=b, k=k: b(np.random.default_rng([seed, k])))


# ----------------------------------------------------------------------------- writing


def make_eval_set(cfg: MakeEvalConfig, progress: bool = True) -> list[Path]:
    """Render and write the evaluation set into ``cfg.out`` (atomically). Returns the stack folders.

    Raises:
        FileExistsError: ``cfg.out`` exists, is not empty and ``cfg.overwrite`` is false.
        ValueError / FormatError: bad lens file, focus distances or size.
    """
    import logging
    import math
    import time

    import numpy as np
    from tqdm import tqdm

    from model.atomic import atomic_dir, atomic_write_json
    from model.cli import UsageError
    from model.formats import FocalStack, write_stack
    from model.lens import LensProfile
    from model.optics import check_focus_distances, working_range_m
    from model.synth.layered import fill_unknown_depth, render_stack_layered
    from model.synth.noise import SensorNoise

    log = logging.getLogger("model.make_eval")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        raise FileExistsError(f"{out}: folder is not empty (pass --overwrite to replace it)")
    lens = LensProfile.load(cfg.lens)
    try:
        fs = check_focus_distances(list(cfg.focus_m), lens, "--focus")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if len(fs) < 2:
        raise UsageError("--focus: need at least 2 focus distances")
    if len(set(fs)) != len(fs):
        raise UsageError(f"--focus: focus distances must be distinct, got {fs}")
    fs = sorted(fs)
    if cfg.size is not None:
        size = (int(cfg.size[0]), int(cfg.size[1]))
        if lens.image_size is not None:
            try:
                lens = lens.scaled_to(size)
            except ValueError as e:
                raise UsageError(f"--size: {e}") from None
        else:
            log.warning("lens %s has no image_size: its pixel pitch is taken to be that of %dx%d images", cfg.lens, *size)
    elif lens.image_size is not None:
        size = lens.image_size
    else:
        raise UsageError(f"{cfg.lens}: the lens has no image_size; pass --size WxH")
    if not math.isfinite(cfg.noise) or cfg.noise < 0:
        raise UsageError(f"--noise must be >= 0, got {cfg.noise}")
    if cfg.limit is not None and cfg.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {cfg.limit}")
    working = working_range_m(fs, lens)
    noise = SensorNoise.from_level(cfg.noise)

    if cfg.tuning is not None and cfg.tuning < 1:
        raise UsageError(f"--tuning must be >= 1, got {cfg.tuning}")
    if cfg.tuning is not None:
        if cfg.tuning_photos < 0:
            raise UsageError(f"--tuning-photos must be >= 0, got {cfg.tuning_photos}")
        builders = list(tuning_scenes(size, fs, working, cfg.tuning, cfg.seed, cfg.tuning_photos))
    else:
        builders = list(eval_scenes(size, fs, working, cfg.seed))
    if cfg.limit is not None:
        builders = builders[: cfg.limit]
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    t0 = time.time()
    index: list[dict[str, Any]] = []
    with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        for k, build in enumerate(tqdm(builders, desc="eval stacks", unit="stack", disable=not progress, file=sys.stderr)):
            sc = build()
            render_depth = fill_unknown_depth(sc.depth)
            rng = np.random.default_rng([cfg.seed, k, 1])
            images = render_stack_layered(sc.aif, render_depth, fs, lens, noise=noise, rng=rng)
            stack = FocalStack(images=images, focus_m=np.asarray(fs), lens=lens, depth=sc.depth, aif=sc.aif,
                               extra={"eval": {**sc.meta, "renderer": "model.synth.layered (disc PSF)",
                                               "noise_level": cfg.noise, "seed": cfg.seed}})
            write_stack(tmp / sc.name, stack, bit_depth=cfg.bit_depth)
            known = np.isfinite(sc.depth)
            index.append({"stack": sc.name, "depth_min_m": float(np.min(sc.depth[known])),
                          "depth_max_m": float(np.max(sc.depth[known])), "known_fraction": float(known.mean()), **sc.meta})
        atomic_write_json(tmp / "eval_set.json", {
            "format": "daif-eval-set/1",
            "lens": lens.to_dict(),
            "focus_m": fs,
            "image_size": list(size),
            "working_range_m": list(working),
            "noise_level": cfg.noise,
            "seed": cfg.seed,
            "stacks": index,
        })
    log.info("wrote %d stacks to %s in %.1f s; depth %.2f-%.2f m", len(index), out, time.time() - t0,
             min(r["depth_min_m"] for r in index), max(r["depth_max_m"] for r in index))
    return [out / r["stack"] for r in index]


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    from model.cli import setup_logging

    setup_logging(cfg.verbose)
    make_eval_set(cfg)
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(main)
