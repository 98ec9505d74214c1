"""The evaluation suite: families of stacks, several lenses, a tuning split and a final test split.

examples:
  python -m model.eval_suite make --out data/suite_test --split test     # the final test set (seed fixed below)
  python -m model.eval_suite make --out data/suite_tune --split tune     # for choosing settings
  python -m model.eval_suite score --data data/suite_test --baseline     # per lens and family, with depth from focus
  python -m model.eval_suite score --data data/suite_test --checkpoint runs/x/best.pt --json scores.json
  # slow scoring (--refine) in two processes, then one table:
  OMP_NUM_THREADS=1 python -m model.eval_suite score --data data/suite_test --refine --shard 0/2 --json a.json &
  OMP_NUM_THREADS=1 python -m model.eval_suite score --data data/suite_test --refine --shard 1/2 --json b.json
  python -m model.eval_suite merge a.json b.json --json scores.json

Every stack is rendered by the layered uniform-disc renderer with occlusion and photon + read noise,
8-bit (:func:`model.synth.layered.render_stack_layered`), not by the Gaussian training renderer, from
procedural scenes with the held-out textures (:mod:`model.synth.textures`), at 320x240. Families, by
where the scene's depths lie relative to the lens's focus distances ``d_1 < ... < d_S``:

=========== ==========================================================================================
far         every surface beyond the farthest focus: ``[1.1 d_S, 2.2 d_S]`` (clipped to the model range)
mid         every surface between the focus distances: ``[d_1, d_S]``
near        surfaces at and nearer than the nearest focus: ``[0.6 d_1, 1.3 d_1]``
weak        weak texture (3-30 % contrast) on every surface, ``[0.8 d_1, 1.5 d_S]``
slanted     slanted background and objects, ``[0.8 d_1, 1.5 d_S]``
occlusion   6-10 overlapping objects, ``[0.8 d_1, 1.5 d_S]``
=========== ==========================================================================================

Lenses: the shipped reference lens (50 mm f/8, 12 um at 320x240, focus 1-6 m), a 16 mm f/1.4 C-mount lens
binned to 320x240 (19.6 um, focus 0.35-1.5 m) and an 8 mm f/2.0 board lens (6 um, 0.2-1.0 m, four frames).
The final test split's seed, :data:`TEST_SEED`, was fixed before its first evaluation; evaluate each shipped
model on it once, and choose settings on the tuning split only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["TEST_SEED", "TUNE_SEED", "FAMILIES", "SuiteLens", "SUITE_LENSES", "make_suite", "score_suite",
           "group_scores", "merge_scores", "parse_shard", "main"]

TEST_SEED = 20261206
"""Seed of the final test split (fixed in advance; README "Results")."""
TUNE_SEED = 1
"""Seed of the tuning split."""
FAMILIES = ("far", "mid", "near", "weak", "slanted", "occlusion")
SIZE = (320, 240)


@dataclass(frozen=True)
class SuiteLens:
    """A lens of the suite: thin-lens numbers at 320x240 and its focus distances (metres)."""

    name: str
    focal_length_m: float
    f_number: float
    pixel_pitch_m: float
    focus_m: tuple[float, ...]


SUITE_LENSES = (
    SuiteLens("ref-50mm-f8", 0.05, 8.0, 12e-6, (1.0, 1.5, 2.5, 4.0, 6.0)),
    SuiteLens("cmount-16mm-f1.4", 0.016, 1.4, 19.6e-6, (0.35, 0.5, 0.7, 1.0, 1.5)),
    SuiteLens("board-8mm-f2", 0.008, 2.0, 6e-6, (0.2, 0.35, 0.55, 1.0)),
)


def _family_scene(rng: Any, family: str, focus: Sequence[float], working: tuple[float, float]):
    from model.synth.scenes import random_scene

    d1, ds = min(focus), max(focus)
    near_ok, far_ok = working
    spec = {
        "far": ((1.1 * ds, 2.2 * ds), dict()),
        "mid": ((d1, ds), dict()),
        "near": ((0.6 * d1, 1.3 * d1), dict()),
        "weak": ((0.8 * d1, 1.5 * ds), dict(weak_texture_prob=1.0)),
        "slanted": ((0.8 * d1, 1.5 * ds), dict(slant_prob=1.0, n_objects=(0, 2))),
        "occlusion": ((0.8 * d1, 1.5 * ds), dict(n_objects=(6, 10))),
    }[family]
    (lo, hi), kw = spec
    lo, hi = max(lo, near_ok * 1.02), min(hi, far_ok * 0.98)
    aif, depth = random_scene(rng, SIZE[1], SIZE[0], lo, hi, split="held_out", **kw)
    return aif, depth, (lo, hi)


def make_suite(out: Path, split: str = "test", per_family: int = 2, progress: bool = True) -> list[Path]:
    """Render the suite's ``split`` (``"test"`` or ``"tune"``) into ``out`` (atomically); returns the stack folders.

    ``per_family`` stacks per family and lens (2: 36 stacks).
    """
    import numpy as np
    from tqdm import tqdm

    from model.atomic import atomic_dir, atomic_write_json
    from model.formats import FocalStack, write_stack
    from model.lens import LensProfile
    from model.lens_range import supported_focus_range_m
    from model.network import NetConfig
    from model.synth.layered import render_stack_layered
    from model.synth.noise import SensorNoise

    if split not in ("test", "tune"):
        raise ValueError(f"split must be 'test' or 'tune', got {split!r}")
    if per_family < 1:
        raise ValueError(f"per_family must be >= 1, got {per_family}")
    seed = TEST_SEED if split == "test" else TUNE_SEED
    noise = SensorNoise.from_level(0.01, bits=8)
    axis = NetConfig(focus_code="blur")
    jobs = [(li, sl, fam, k) for li, sl in enumerate(SUITE_LENSES) for fam in FAMILIES for k in range(per_family)]
    index = []
    with atomic_dir(out) as tmp:
        for li, sl, fam, k in tqdm(jobs, desc=f"suite {split}", unit="stack", disable=not progress, file=sys.stderr):
            lens = LensProfile(sl.focal_length_m, sl.f_number, sl.pixel_pitch_m, name=sl.name, image_size=SIZE)
            working = supported_focus_range_m(axis, lens)  # the lens-aware model's axis for this lens
            rng = np.random.default_rng([seed, li, FAMILIES.index(fam), k])
            aif, depth, rng_m = _family_scene(rng, fam, sl.focus_m, working)
            images = render_stack_layered(aif, depth, sl.focus_m, lens, noise=noise, rng=rng)
            name = f"{sl.name}_{fam}_{k}"
            meta = {"family": fam, "lens": sl.name, "split": split, "seed": seed, "scene_range_m": list(rng_m),
                    "renderer": "model.synth.layered (disc PSF, occlusion, noise 0.01, 8 bit)"}
            write_stack(tmp / name, FocalStack(images=images, focus_m=np.asarray(sl.focus_m), lens=lens, depth=depth,
                                               aif=aif, extra={"eval": meta}))
            index.append({"stack": name, **meta})
        atomic_write_json(tmp / "suite.json", {"format": "daif-eval-suite/1", "split": split, "seed": seed, "stacks": index})
    return [out / r["stack"] for r in index]


def score_suite(data: Path, model: Path | None = None, baseline: bool = True, ignore_lens: bool = False,
                refine: bool = False, sweep: bool = False, shard: tuple[int, int] | None = None,
                fast_refine: bool = False) -> dict[str, Any]:
    """Evaluate a suite folder; returns the overall scores and a table per lens and per family.

    A lens-specific model meets another lens only with ``ignore_lens`` (it then runs with its own optics).
    ``shard=(i, n)`` scores stacks i, i + n, ... only (see :func:`merge_scores`).
    """
    from model.evaluate import evaluate_folder

    res = evaluate_folder(data, model=model, runtime="torch", baseline=baseline, ignore_lens=ignore_lens, refine=refine,
                          sweep=sweep, shard=shard, fast_refine=fast_refine)
    return group_scores(res["per_stack"])


_METHODS = ("model", "baseline", "refined", "swept", "fast_refined")


def group_scores(per_stack: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Overall scores and a table per lens and per family from per-stack rows (stack names ``<lens>_<family>_<k>``).

    Returns ``{"overall": {method: scores}, "groups": {"lens <name>" | "family <name>": {method: scores}},
    "per_stack": rows sorted by stack}`` for the methods ``model``, ``baseline``, ``refined``, ``swept`` present.
    """
    from model.metrics import aggregate

    rows = sorted(per_stack, key=lambda r: r["stack"])
    overall = {k: aggregate([r[k] for r in rows if k in r]) for k in _METHODS if any(k in r for r in rows)}
    groups: dict[str, dict[str, list]] = {}
    for row in rows:
        lens_name, fam = row["stack"].rsplit("_", 2)[:2]
        for key in _METHODS:
            if key in row:
                for g in (f"lens {lens_name}", f"family {fam}"):
                    groups.setdefault(g, {}).setdefault(key, []).append(row[key])
    table = {g: {k: aggregate(v) for k, v in d.items()} for g, d in sorted(groups.items())}
    return {"overall": overall, "groups": table, "per_stack": rows}


def merge_scores(parts: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """One score table from the scores of several shards (``score --shard i/n --json``) of one suite.

    Raises:
        ValueError: a part has no ``per_stack`` rows, or a stack appears in two parts.
    """
    names = list(names) if names is not None else [f"part {i + 1}" for i in range(len(parts))]
    seen: dict[str, str] = {}
    rows = []
    for name, part in zip(names, parts):
        if not isinstance(part.get("per_stack"), list):
            raise ValueError(f"{name}: no 'per_stack' list (not written by 'eval_suite score --json')")
        for row in part["per_stack"]:
            if not isinstance(row, dict) or not isinstance(row.get("stack"), str):
                raise ValueError(f"{name}: a per_stack row without a 'stack' name: {str(row)[:80]}")
            if row["stack"] in seen:
                raise ValueError(f"stack {row['stack']} is in both {seen[row['stack']]} and {name}: "
                                 "merge the shards of one run (--shard 0/n ... n-1/n) only")
            seen[row["stack"]] = name
            rows.append(row)
    return group_scores(rows)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ValueError otherwise."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like 0/2 (index/count), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= index < count")
    return i, n


def format_scores(scores: dict[str, Any]) -> str:
    """Plain-text table: delta1 / AbsRel of the network (with the sweep, the fast refinement, the refinement) and depth
    from focus per group."""
    lines = [f"{'group':<28}{'net d1':>8}{'AbsRel':>8}{'swp d1':>8}{'AbsRel':>8}{'fast d1':>8}{'AbsRel':>8}"
             f"{'ref d1':>8}{'AbsRel':>8}{'DfF d1':>8}{'AbsRel':>8}{'n':>4}"]

    def cell(d: dict[str, Any], key: str) -> str:
        return f"{d[key]['d1']:>8.3f}{d[key]['abs_rel']:>8.3f}" if key in d else f"{'-':>8}{'-':>8}"

    for name, d in [("all", scores["overall"]), *scores["groups"].items()]:
        n = int(d["model"]["stacks"]) if "model" in d else 0
        lines.append(f"{name:<28}{cell(d, 'model')}{cell(d, 'swept')}{cell(d, 'fast_refined')}{cell(d, 'refined')}"
                     f"{cell(d, 'baseline')}{n:>4}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.eval_suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="render a split of the suite")
    m.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    m.add_argument("--split", choices=("test", "tune"), default="tune", help="tune (default) or the final test split")
    m.add_argument("--per-family", type=int, default=2, help="stacks per family and lens (default 2)")
    s = sub.add_parser("score", help="evaluate a model on a suite folder")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped one)")
    s.add_argument("--baseline", action="store_true", help="also classical depth from focus")
    s.add_argument("--refine", action="store_true", help="also test-time refinement (slow: ~80 s per stack on 2 cores with the default two starts)")
    s.add_argument("--sweep", action="store_true", help="also the network + relative-blur sweep (model.defocus_sweep; ~0.25-0.3 s per 320x240 stack on 2 CPU cores)")
    s.add_argument("--fast-refine", action="store_true",
                   help="also the fast refinement (model.refine.FAST_REFINE: sweep + the refinement's fill, twice; ~5.5 s per stack on two threads)")
    s.add_argument("--ignore-lens", action="store_true", help="run a lens-specific model on other lenses anyway")
    s.add_argument("--shard", type=str, default=None, metavar="I/N",
                   help="score stacks I, I+N, I+2N, ... only (run N processes, then 'merge' their --json files)")
    s.add_argument("--json", type=Path, default=None, help="also write the scores as JSON")
    g = sub.add_parser("merge", help="one table from the --json files of 'score --shard' runs")
    g.add_argument("parts", type=Path, nargs="+", help="scores JSON files of the shards")
    g.add_argument("--json", type=Path, default=None, help="also write the merged scores as JSON")
    args = p.parse_args(argv)
    from model.cli import setup_logging

    setup_logging()
    if args.cmd == "make":
        paths = make_suite(args.out, args.split, args.per_family)
        print(f"wrote {len(paths)} stacks to {args.out}")
        return 0
    if args.cmd == "merge":
        from model.jsonfile import read_json_object

        scores = merge_scores([read_json_object(f) for f in args.parts], [str(f) for f in args.parts])
    else:
        shard = parse_shard(args.shard) if args.shard is not None else None
        scores = score_suite(args.data, args.checkpoint, args.baseline, args.ignore_lens, args.refine, args.sweep,
                             shard, fast_refine=args.fast_refine)
    print(format_scores(scores))
    if args.json is not None:
        from model.atomic import atomic_write_json

        atomic_write_json(args.json, scores)
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
