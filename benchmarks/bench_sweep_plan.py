"""Does the planned sweep (model.sweep_plan) give better depth than an even spacing in metres?

For each case (lens, working range, frame count) it takes the plan's focus distances and, for
comparison, the same number of focus distances evenly spaced in metres over the range (bin centres) and
evenly in dioptres. Test scenes: textured fronto-parallel planes (model.synth.textures, 96 x 96 pixels
each) at depths spread evenly in log depth over the range (``--depths`` of them; ``--metre-depths``
spreads them evenly in metres instead), rendered with model.synth.layered.render_stack_layered (uniform
disc PSF, thin lens from model.optics) with sensor noise (shot + read, 8 bit). Depth is then estimated
per pixel by two estimators:

- ``plane-sweep``: the known all-in-focus image blurred for each of 160 candidate depths (log-spaced over
  the range) and compared with every frame in a 9 x 9 window (sum of squared differences, all frames
  together); the best candidate per pixel. This is the estimator the plan's noise model is about.
- ``dff``: the classical depth-from-focus baseline (model/baseline_dff.py), which knows no AIF and can
  only place depth between the nearest and farthest focus distance.

Errors are over the planes' interiors (24 px from their borders), reported as the median of the
per-plane mean absolute relative error (AbsRel), and the fraction of pixels within 10 % of the truth
(delta < 1.1). It prints numbers and asserts nothing.

    .venv/bin/python benchmarks/bench_sweep_plan.py [--depths 24] [--seeds 2] [--metre-depths]

Takes about half a minute on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.baseline_dff import depth_from_focus  # noqa: E402
from model.lens import LensProfile  # noqa: E402
from model.optics import coc_diameter_m  # noqa: E402
from model.sweep_plan import plan_focus_distances  # noqa: E402
from model.synth.layered import disc_blur, render_stack_layered  # noqa: E402
from model.synth.noise import SensorNoise  # noqa: E402
from model.synth.textures import procedural_texture  # noqa: E402

CASES = [
    ("16 mm f/1.4, 9.8 um (640x480)", LensProfile(16e-3, 1.4, 9.8e-6, image_size=(640, 480)), 0.5, 3.0, 5),
    ("16 mm f/1.4, 9.8 um (640x480)", LensProfile(16e-3, 1.4, 9.8e-6, image_size=(640, 480)), 1.0, 6.0, 4),
    ("CM3-like 4.74 mm f/1.8, 10.1 um (640x480)", LensProfile(4.74e-3, 1.8, 1.4e-6 * 4608 / 640, image_size=(640, 480)), 0.1, 1.0, 5),
]
SIZE = 96
MARGIN = 24
WINDOW = 9
CANDIDATES = 160


def _grey(x: np.ndarray) -> np.ndarray:
    return (x @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def plane_sweep(frames: np.ndarray, aif: np.ndarray, focus_m: np.ndarray, lens: LensProfile, near: float, far: float) -> np.ndarray:
    """Per-pixel depth ``(H, W)`` by comparing the frames with the known AIF blurred for candidate depths."""
    obs = [_grey(f) for f in frames]
    a = _grey(aif)
    cands = np.geomspace(near, far, CANDIDATES)
    best = np.full(a.shape, np.inf, np.float32)
    depth = np.zeros(a.shape, np.float32)
    for d in cands:
        cost = np.zeros(a.shape, np.float32)
        for o, fm in zip(obs, focus_m):
            diam = float(coc_diameter_m(d, fm, lens)) / lens.pixel_pitch_m
            pred = disc_blur(a, diam)
            cost += cv2.boxFilter((o - pred) ** 2, -1, (WINDOW, WINDOW), normalize=False, borderType=cv2.BORDER_REFLECT)
        better = cost < best
        best[better] = cost[better]
        depth[better] = d
    return depth


def evaluate(lens: LensProfile, focus_m: np.ndarray, depths: np.ndarray, near: float, far: float, seed: int,
             noise: SensorNoise) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    rel = {"plane-sweep": [], "dff": []}
    within = {"plane-sweep": [], "dff": []}
    for d in depths:
        aif = procedural_texture(rng, SIZE, SIZE)
        dm = np.full((SIZE, SIZE), d, np.float32)
        frames = render_stack_layered(aif, dm, focus_m, lens, noise=noise, rng=rng)
        ests = {
            "plane-sweep": plane_sweep(frames, aif, focus_m, lens, near, far),
            "dff": np.asarray(depth_from_focus(frames, focus_m)),
        }
        sl = slice(MARGIN, SIZE - MARGIN)
        for k, e in ests.items():
            err = np.abs(e[sl, sl] - d) / d
            rel[k].append(float(err.mean()))
            within[k].append(float(np.mean(np.maximum(e[sl, sl] / d, d / e[sl, sl]) < 1.1)))
    return {k: (float(np.median(rel[k])), float(np.mean(within[k]))) for k in rel}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", type=int, default=24, help="test planes per case and seed")
    ap.add_argument("--seeds", type=int, default=2, help="scene seeds")
    ap.add_argument("--metre-depths", action="store_true", help="test depths even in metres (default: even in log depth)")
    ap.add_argument("--shot", type=float, default=2e-4, help="shot-noise variance per unit signal (default 2e-4)")
    ap.add_argument("--read", type=float, default=3e-3, help="read noise, fraction of full scale (default 3e-3)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    noise = SensorNoise(shot_gain=args.shot, read_std=args.read, bits=8)
    t0 = time.perf_counter()
    print(f"sensor noise: shot {args.shot:g}, read {args.read:g}, 8 bit; test depths: {args.depths} planes per seed, {'even in metres' if args.metre_depths else 'even in log depth'}, "
          f"{args.seeds} seeds; AbsRel = median over planes of the mean |d_est - d| / d; d<1.1 = fraction of pixels within 10 %")
    for name, lens, near, far, s in CASES:
        plan = plan_focus_distances(lens, near, far, s)
        sets = {
            "planned": plan.focus_m,
            "even in metres": np.linspace(near, far, 2 * s + 1)[1::2],
            "even in dioptres": 1.0 / np.linspace(1 / near, 1 / far, 2 * s + 1)[1::2],
        }
        depths = np.linspace(near, far, args.depths) if args.metre_depths else np.geomspace(near, far, args.depths)
        print(f"\n{name}, range {near:g}-{far:g} m, {s} frames "
              f"(predicted typical relative error: planned {100 * plan.rms_rel_err:.1f}%, even in metres "
              f"{100 * plan.even_metre_rel_err:.1f}%, even in dioptres {100 * plan.even_dioptre_rel_err:.1f}%)")
        print(f"  {'focus set':<17} {'focus distances, m':<40} {'plane-sweep AbsRel':>18} {'d<1.1':>6} {'dff AbsRel':>11} {'d<1.1':>6}")
        for label, fm in sets.items():
            res = [evaluate(lens, np.asarray(fm, np.float64), depths, near, far, seed, noise) for seed in range(args.seeds)]
            ps = (np.median([r["plane-sweep"][0] for r in res]), np.mean([r["plane-sweep"][1] for r in res]))
            df = (np.median([r["dff"][0] for r in res]), np.mean([r["dff"][1] for r in res]))
            fs = " ".join(f"{x:.3g}" for x in fm)
            print(f"  {label:<17} {fs:<40} {100 * ps[0]:17.2f}% {ps[1]:6.2f} {100 * df[0]:10.2f}% {df[1]:6.2f}")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
