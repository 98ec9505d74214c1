"""Predict metric depth and the all-in-focus image for every focal stack under a folder.

For each focal-stack/1 folder X under --data, writes OUT/X/ with depth.npy (float32 H x W, metres),
aif.png, confidence.npy (float32 in [0, 1], from re-rendering the stack through the lens model),
depth.png (colour-mapped, with a scale in metres), figure.png (input frames, AIF, depth, defocus
maps, re-rendered stack and residual) and prediction.json (where it came from, warnings). Each output
folder is written atomically (model.prediction_io).

Nothing is lost: an output root that is, contains or lies inside an input stack folder is refused, and
--overwrite replaces prediction folders only, never a focal-stack/1 folder. Outputs finished by an
earlier run are skipped (--overwrite redoes them), so an interrupted run continues where it stopped;
temporary files a killed run left behind are removed. A stack that cannot be read or predicted is
reported at the end and the others go on (exit code 2 if any was bad input, 1 for other failures). A stack whose frames carry no
depth (identical frames, all black or flat, one repeated focus distance) gets a warning, the reason in
prediction.json and a confidence of 0. Stacks larger than --max-size pixels on the long side are
downscaled for inference (the lens's pixel pitch scaled with them) and the result is brought back to
the input's size.

examples:
  python -m model.predict --data recordings/ --out predictions/
  python -m model.predict --data stacks/ --out pred/ --runtime onnxruntime --model daifnet.onnx
  python -m model.predict --data stacks/ --out pred/ --sweep     # +~0.3 s/stack: physics sweep around the network's depth
  python -m model.predict --data stacks/ --out pred/ --fast-refine   # ~5.5 s/stack on 2 cores: sweep + fill (twice), no gradient fits
  python -m model.predict --data stacks/ --out pred/ --refine    # slower, more accurate (model.refine)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "PredictConfig",
    "PredictReport",
    "predict_folder",
    "plan_outputs",
    "write_prediction",
    "fit_size",
    "main",
    "DEFAULT_MAX_SIZE",
]

log = logging.getLogger("model.predict")

DEFAULT_MAX_SIZE = 1280
"""Default limit on the long side of a stack, pixels: larger stacks are downscaled for inference."""


@dataclass
class PredictConfig:
    """Options of ``python -m model.predict``.

    ``max_size``: the longest side (pixels) a stack is run at; larger stacks are downscaled for
    inference, 0 means no limit.
    """

    data: Path
    out: Path
    model: Path | None = None
    runtime: str = "auto"
    figures: bool = True
    overwrite: bool = False
    ignore_lens: bool = False
    device: str | None = None
    refine: bool = False
    refine_blur_scale: float = 1.08  # model.refine.DISC_MATCHED_SIGMA_SCALE
    refine_far_start: float | None = None  # None: model.refine.RefineConfig's default
    refine_texture: str | None = None  # RefineConfig.propagate_texture_from; None: its default
    refine_cost_trust: bool | None = None  # RefineConfig.propagate_cost_agreement; None: its default (on)
    sweep: bool = False  # model.defocus_sweep around the network's depth (not with refine)
    fast_refine: bool = False  # model.refine.FAST_REFINE: sweep + fill, no gradient fits (not with refine/sweep)
    max_size: int = DEFAULT_MAX_SIZE


@dataclass
class PredictReport:
    """What :func:`predict_folder` did.

    Attributes:
        written: output folders written in this run.
        skipped: output folders already finished by an earlier run (left as they were).
        failed: ``(input stack folder, one-line reason)`` for every stack that could not be predicted.
        warned: ``(input stack folder, warning)`` for stacks predicted with a warning (no depth
            evidence, downscaled).
        orphans: temporary files and folders of killed runs that were removed from the output root.
        runtime_failures: how many of ``failed`` were not bad input (out of memory, an unexpected error).
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    warned: list[tuple[Path, str]] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    runtime_failures: int = 0

    def __iter__(self):  # the written folders, as the list this function used to return
        return iter(self.written)

    def __len__(self) -> int:
        return len(self.written)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder holding focal-stack/1 folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True,
                   help="output root; one folder per input stack (must not be, contain or lie inside an input stack)")
    p.add_argument("--checkpoint", "--model", dest="model", type=Path, default=None,
                   help="checkpoint (.pt), ONNX file or TensorRT engine (default: the shipped model)")
    from model.runners import RUNTIMES

    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="inference runtime (default: by the model file; PyTorch for checkpoints)")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="skip depth.png and figure.png")
    p.add_argument("--overwrite", action="store_true",
                   help="redo outputs that an earlier run finished (default: skip them); replaces prediction "
                        "folders only, never a focal-stack/1 folder")
    p.add_argument("--ignore-lens", action="store_true", help="run even if a stack's lens differs from the model's")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda); default: cuda when available")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="PX",
                   help=f"downscale stacks whose long side exceeds PX pixels for inference, the lens's pixel pitch "
                        f"with them (default {DEFAULT_MAX_SIZE}; 0: no limit, memory grows with the pixel count)")
    p.add_argument("--refine", action="store_true",
                   help="refine each prediction on its own stack through the lens model, then fill textureless "
                        "regions from confident ones (model.refine; ~80 s per 320x240 stack on 2 CPU cores with the default "
                        "two starts, ~50 s with one)")
    p.add_argument("--sweep", action="store_true",
                   help="sharpen the network's depth with a relative-blur plane sweep on the stack itself, searched "
                        "around the network's depth (model.defocus_sweep; about 0.25-0.3 s per 320x240 stack on 2 CPU cores; "
                        "on the evaluation suite's final test split, shipped model: delta1 0.67 -> 0.72, AbsRel 0.23 -> 0.20)")
    p.add_argument("--fast-refine", action="store_true",
                   help="the fast refinement: twice that sweep, each followed by filling untrusted and textureless pixels from trusted ones "
                        "along the image's colour edges, without the full refinement's gradient fits "
                        "(model.refine.FAST_REFINE; ~5.5 s per 320x240 stack on two CPU threads, 6.9 s on one)")
    p.add_argument("--refine-blur-scale", type=float, default=1.08, metavar="K",
                   help="with --refine: the fit's Gaussian blur in units of the moment-matched c/(4p); 1.08 (default) "
                        "matches a lens whose defocus blur is a uniform disc, 1.0 one whose blur is Gaussian-like")
    p.add_argument("--refine-far-start", type=float, default=None, metavar="F",
                   help="with --refine: also refine from a constant depth at F times the working range's far end and "
                        "keep that result when the stack's relative blur prefers it (recovers scenes beyond the "
                        "farthest focus; 1.55x the cost); 0 turns it off (default 0.8, model.refine.RefineConfig)")
    p.add_argument("--refine-texture", choices=("aif", "focus", "both"), default=None,
                   help="with --refine: where the propagation measures the texture that makes a fitted pixel "
                        "trusted: the fitted AIF, the frame focused at the pixel's fitted depth, or both (the "
                        "smaller; default, guards against halos of near objects on textureless walls)")
    p.add_argument("--refine-no-cost-trust", dest="refine_cost_trust", action="store_false", default=None,
                   help="with --refine: do not weigh the propagation's trust by the agreement of the fitted depth with "
                        "the stack's own relative-blur cost (on by default: it keeps wrong fits from spreading)")
    return p


# ----------------------------------------------------------------------------- where outputs go


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _inside(child: Path, parent: Path) -> bool:
    """``child`` is ``parent`` or lies below it (both resolved)."""
    return child == parent or parent in child.parents


def _holds_stack(folder: Path) -> Path | None:
    """The first ``stack.json`` at or below ``folder`` (hidden folders included), or ``None``."""
    if not folder.is_dir():
        return None
    for dirpath, _dirs, files in os.walk(folder):
        if "stack.json" in files:
            return Path(dirpath) / "stack.json"
    return None


def plan_outputs(data: Path, out: Path, stacks: list[Path], overwrite: bool) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Map every input stack to its output folder; refuse anything that could lose data.

    Returns ``(todo, skipped)``: ``(stack folder, output folder)`` pairs to predict, and the output
    folders an earlier run finished (skipped unless ``overwrite``).

    Raises:
        UsageError: the output root is, contains or lies inside an input stack folder; an output folder
            would replace a focal-stack/1 folder or a folder that is not a prediction; ``out`` is a file.
    """
    from model.cli import UsageError
    from model.prediction_io import is_prediction_folder

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    out_r = _real(out)
    for folder in stacks:
        st = _real(folder)
        if _inside(out_r, st):
            raise UsageError(f"--out {out} {'is' if out_r == st else 'lies inside'} the input stack {folder} "
                             f"(it holds stack.json): writing there could destroy the recording; choose an output "
                             f"folder outside --data's stacks, e.g. {Path(str(data).rstrip('/') + '-predictions')}")
        if _inside(st, out_r):
            raise UsageError(f"--out {out} contains the input stack {folder}: predictions would be written among the "
                             f"recordings (and --overwrite could replace them); choose an output folder outside "
                             f"--data, e.g. {Path(str(data).rstrip('/') + '-predictions')}")
    todo: list[tuple[Path, Path]] = []
    skipped: list[Path] = []
    seen: dict[Path, Path] = {}
    for folder in stacks:
        rel = folder.relative_to(data)
        dst = out / rel if str(rel) != "." else out / folder.name
        key = _real(dst)
        if key in seen:
            raise UsageError(f"{folder} and {seen[key]} would both write {dst}")
        seen[key] = folder
        stack_json = _holds_stack(dst)
        if stack_json is not None:
            raise UsageError(f"{dst}: holds a focal stack ({stack_json}); model.predict never replaces recordings, "
                             f"not even with --overwrite: choose another --out")
        if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
            raise UsageError(f"{dst}: exists and is not a prediction folder; move it away or choose another --out")
        if dst.is_dir():
            if is_prediction_folder(dst):
                if not overwrite:
                    skipped.append(dst)
                    continue
            elif any(dst.iterdir()):
                raise UsageError(f"{dst}: exists and is not a prediction folder (no depth.npy/aif.png); "
                                 f"--overwrite replaces prediction folders only: move it away or choose another --out")
        todo.append((folder, dst))
    return todo, skipped


# ----------------------------------------------------------------------------- one stack


def fit_size(size: tuple[int, int], max_size: int) -> tuple[int, int]:
    """``(width, height)`` scaled down so that the long side is at most ``max_size`` (0: unchanged)."""
    w, h = int(size[0]), int(size[1])
    if max_size <= 0 or max(w, h) <= max_size:
        return w, h
    k = max_size / max(w, h)
    return max(1, round(w * k)), max(1, round(h * k))


def _downscale(stack, size: tuple[int, int]):
    """The stack resized to ``size = (w, h)`` (area averaging) with its lens's pixel pitch scaled to match."""
    import cv2
    import numpy as np

    w0, h0 = stack.size
    lens = stack.lens if stack.lens.image_size is not None else replace(stack.lens, image_size=(w0, h0))
    if tuple(lens.image_size) != (w0, h0):
        lens = lens.scaled_to((w0, h0))
    images = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in stack.images])
    depth = None
    if stack.depth is not None:
        depth = cv2.resize(stack.depth, size, interpolation=cv2.INTER_NEAREST)
    return replace(stack, images=images, lens=lens.scaled_to(size), depth=depth, aif=None)


def _upscale(pred, size: tuple[int, int]):
    """The prediction brought back to the input's ``size = (w, h)`` (depth interpolated in inverse depth)."""
    import cv2
    import numpy as np

    w, h = size
    inv = cv2.resize((1.0 / np.maximum(pred.depth_m, 1e-6)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    depth = (1.0 / np.maximum(inv, 1e-9)).astype(np.float32)
    aif = cv2.resize(pred.aif.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    conf = None
    if pred.confidence is not None:
        conf = cv2.resize(pred.confidence.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return replace(pred, depth_m=depth, aif=aif, confidence=conf, residual=None, rendered=None)


def write_prediction(folder: Path, stack, pred, lens, near_m: float, far_m: float, figures: bool = True,
                     overwrite: bool = False, metadata: dict[str, Any] | None = None, figure_stack=None,
                     figure_pred=None) -> Path:
    """Write one prediction folder (``docs/FORMATS.md`` "Predictions") atomically.

    ``stack``/``pred`` give the files at the input's size; ``figure_stack``/``figure_pred`` (default: the
    same) what ``figure.png`` shows, e.g. the downscaled stack the model actually saw.
    """
    import numpy as np

    from model.optics import coc_sigma_px
    from model.prediction_io import write_prediction_folder
    from model.visualize import prediction_panel

    fs = figure_stack if figure_stack is not None else stack
    fp = figure_pred if figure_pred is not None else pred

    def figure(tmp: Path) -> None:
        sigma = np.stack([coc_sigma_px(fp.depth_m.astype(np.float64), float(f), lens) for f in fs.focus_m])
        prediction_panel(
            tmp / "figure.png", fs.images, list(fs.focus_m), fp.depth_m, fp.aif, near_m, far_m,
            sigma_px=sigma, rendered=fp.rendered, confidence=fp.confidence, gt_depth_m=fs.depth,
            title=str(stack.path.name if stack.path else ""),
        )

    return write_prediction_folder(folder, pred.depth_m, pred.aif, pred.confidence, near_m=near_m, far_m=far_m,
                                   depth_png=figures, metadata=metadata, extra=figure if figures else None,
                                   overwrite=overwrite)


def _predict_one(cfg: PredictConfig, runner, folder: Path, dst: Path, report: PredictReport) -> None:
    from model.formats import read_stack
    from model.runners import bind_lens, working_range_of
    from model.stack_checks import check_frame_count, check_stack_evidence, no_evidence_confidence

    stack = read_stack(folder)
    sj = folder / "stack.json"
    names = _frame_files(sj, len(stack))
    check_frame_count(len(stack), sj, names or ())
    warnings: list[str] = []
    evidence = check_stack_evidence(stack.images, stack.focus_m, frame_names=names)
    if not evidence.has_evidence:
        msg = f"no depth evidence: {evidence.reason}; depth written with confidence 0"
        warnings.append(msg)
    elif evidence.problems:
        warnings.append("less depth evidence: " + "; ".join(evidence.problems))
    w0, h0 = stack.size
    run_size = fit_size((w0, h0), cfg.max_size)
    run_stack = stack
    if run_size != (w0, h0):
        run_stack = _downscale(stack, run_size)
        warnings.append(f"{w0}x{h0} is larger than --max-size {cfg.max_size}: predicted at {run_size[0]}x{run_size[1]} "
                        f"(pixel pitch scaled to {run_stack.lens.pixel_pitch_m:.3g} m) and brought back to {w0}x{h0}")
    for w in warnings:
        log.warning("%s: %s", folder, w)
        report.warned.append((folder, w))
    bind_lens(runner, run_stack.lens, run_stack.focus_m, str(sj), ignore_lens=cfg.ignore_lens)
    near_m, far_m = working_range_of(runner)  # a lens-aware model's range follows the stack's lens
    pred = runner.predict(run_stack.images, run_stack.focus_m)
    if not evidence.has_evidence:
        pred = replace(pred, confidence=no_evidence_confidence(pred.depth_m.shape))
    out_pred = _upscale(pred, (w0, h0)) if run_size != (w0, h0) else pred
    meta: dict[str, Any] = {
        "stack": str(folder),
        "model": str(cfg.model) if cfg.model is not None else "shipped default",
        "runtime": getattr(runner, "name", cfg.runtime),
        "refine": bool(cfg.refine),
        "sweep": bool(cfg.sweep),
        "fast_refine": bool(cfg.fast_refine),
        "input_size": [w0, h0],
        "inferred_size": list(run_size),
        "focus_m": [float(f) for f in stack.focus_m],
        "depth_evidence": evidence.to_dict(),
        "warnings": warnings,
    }
    if not evidence.has_evidence:  # never a confident depth from no evidence, whatever the runtime returned
        out_pred = replace(out_pred, confidence=no_evidence_confidence(out_pred.depth_m.shape))
    write_prediction(dst, stack, out_pred, runner.lens, near_m, far_m, cfg.figures,
                     overwrite=cfg.overwrite or dst.exists(), metadata=meta, figure_stack=run_stack, figure_pred=pred)
    report.written.append(dst)


def _frame_files(stack_json: Path, n: int) -> list[str] | None:
    """The frames' file names in the order :func:`model.formats.read_stack` gives them (by focus distance)."""
    import json

    try:
        frames = json.loads(stack_json.read_text(encoding="utf-8"))["frames"]
        if all(isinstance(f.get("focus_distance_m"), (int, float)) for f in frames):
            frames = sorted(frames, key=lambda f: f["focus_distance_m"])  # stable, as read_stack sorts
        names = [str(f["file"]) for f in frames]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return names if len(names) == n else None


# ----------------------------------------------------------------------------- the folder


class DiskFullError(OSError):
    """The disk filled up while writing predictions (every folder written before is complete)."""


def predict_folder(cfg: PredictConfig) -> PredictReport:
    """Run the model on every stack under ``cfg.data``; returns what was written, skipped and failed.

    Raises:
        UsageError: bad options, or outputs that could lose data (see :func:`plan_outputs`), before any work.
        FileNotFoundError: no stacks under ``cfg.data``.
        DiskFullError: the disk filled up (the folders finished before stay; a rerun continues).
    """
    from model.atomic import FolderBusyError, exclusive_folder, remove_orphans
    from model.cli import UsageError
    from model.formats import find_stacks

    if cfg.max_size < 0:
        raise UsageError(f"--max-size must be >= 0 (0: no limit), got {cfg.max_size}")
    if cfg.sweep and cfg.refine:
        raise UsageError("--sweep and --refine are alternatives (refine fits the depth itself): choose one")
    if cfg.fast_refine and (cfg.refine or cfg.sweep):
        raise UsageError("--fast-refine is an alternative to --refine and --sweep (it sweeps itself): choose one")
    stacks = find_stacks(cfg.data)
    if not stacks:
        raise FileNotFoundError(f"{cfg.data}: no focal-stack/1 folder (stack.json) found")
    todo, skipped = plan_outputs(cfg.data, cfg.out, stacks, cfg.overwrite)
    # the model (and its options) are checked before anything is created or cleaned under --out
    runner = _make_runner(cfg) if todo or not cfg.out.exists() else None
    report = PredictReport()
    try:
        with exclusive_folder(cfg.out, what="another model.predict"):
            report.orphans = remove_orphans(cfg.out)
            if report.orphans:
                log.info("removed %d temporary file(s)/folder(s) left by an interrupted run under %s",
                         len(report.orphans), cfg.out)
                todo, skipped = plan_outputs(cfg.data, cfg.out, stacks, cfg.overwrite)  # a restored folder is finished
            report.skipped = skipped
            if skipped:
                log.info("skipping %d stack(s) whose outputs an earlier run finished (--overwrite redoes them)",
                         len(skipped))
            if todo:
                _run_all(cfg, runner if runner is not None else _make_runner(cfg), todo, report)
    except FolderBusyError as e:
        raise UsageError(str(e)) from None
    return report


def _make_runner(cfg: PredictConfig):
    from model.runners import create_runner

    # the physics check is made once, of the final depth, by the sweep or the fast refinement
    runner = create_runner(cfg.runtime, cfg.model, device=cfg.device, with_confidence=not (cfg.sweep or cfg.fast_refine))
    if cfg.fast_refine:
        from model.refine import FAST_REFINE, RefiningRunner

        runner = RefiningRunner(runner, FAST_REFINE, device=cfg.device, progress=True)
    if cfg.sweep:  # the physics check is made once, of the swept depth
        from model.defocus_sweep import SweepingRunner

        runner = SweepingRunner(runner, device=cfg.device, with_confidence=True)
    if cfg.refine:
        from model.refine import RefineConfig, RefiningRunner

        refine_cfg = RefineConfig(psf_sigma_scale=cfg.refine_blur_scale)
        if cfg.refine_far_start is not None:
            refine_cfg = replace(refine_cfg, far_start=cfg.refine_far_start)
        if cfg.refine_texture is not None:
            refine_cfg = replace(refine_cfg, propagate_texture_from=cfg.refine_texture)
        if cfg.refine_cost_trust is not None:
            refine_cfg = replace(refine_cfg, propagate_cost_agreement=cfg.refine_cost_trust)
        runner = RefiningRunner(runner, refine_cfg, device=cfg.device, progress=True)
    return runner


def _run_all(cfg: PredictConfig, runner, todo: list[tuple[Path, Path]], report: PredictReport) -> None:
    from tqdm import tqdm

    from model.atomic import is_disk_full
    from model.errors import CheckpointError, FormatError

    for folder, dst in tqdm(todo, desc="predict", unit="stack", disable=len(todo) < 2):
        why = None
        try:
            _predict_one(cfg, runner, folder, dst, report)
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(
                    e.errno, f"disk full writing {dst} ({_free(cfg.out)} free): {len(report.written)} prediction(s) of "
                    f"this run are complete; free some space and run the same command again (finished outputs are "
                    f"skipped)") from None
            why = _one_line(e)
        except (FormatError, CheckpointError, ValueError) as e:
            why = _one_line(e)
        except MemoryError:
            why = f"out of memory (try a smaller --max-size than {cfg.max_size})"
            report.runtime_failures += 1
        except Exception as e:  # noqa: BLE001 - one stack must not stop the folder; reported at the end
            why = f"{type(e).__name__}: {_one_line(e)}"
            report.runtime_failures += 1
        if why is not None:
            why = why if str(folder) in why else f"{folder}: {why}"
            report.failed.append((folder, why))
            log.error("%s", why)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename + ': ' if e.filename else ''}{e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


def _free(path: Path) -> str:
    import shutil

    try:
        return f"{shutil.disk_usage(path).free / 2**20:.0f} MiB"
    except OSError:
        return "no space"


def main(argv: list[str] | None = None) -> int:
    """The command line; returns 0, or 2 when some stacks could not be predicted (listed at the end)."""
    args = build_parser().parse_args(argv)
    from model.cli import setup_logging

    setup_logging()
    cfg = PredictConfig(data=args.data, out=args.out, model=args.model, runtime=args.runtime, figures=args.figures,
                        overwrite=args.overwrite, ignore_lens=args.ignore_lens, device=args.device, refine=args.refine,
                        refine_blur_scale=args.refine_blur_scale, refine_far_start=args.refine_far_start,
                        refine_texture=args.refine_texture, refine_cost_trust=args.refine_cost_trust,
                        sweep=args.sweep, fast_refine=args.fast_refine, max_size=args.max_size)
    report = predict_folder(cfg)
    line = f"wrote {len(report.written)} prediction folder(s) under {cfg.out}"
    if report.skipped:
        line += f"; skipped {len(report.skipped)} finished by an earlier run (--overwrite redoes them)"
    print(line)
    if report.warned:
        print(f"{len(report.warned)} warning(s):")
        for folder, why in report.warned:
            print(f"  {folder}: {why}")
    if report.failed:
        print(f"error: {len(report.failed)} of {len(report.failed) + len(report.written)} stack(s) could not be predicted:",
              file=sys.stderr)
        for _folder, why in report.failed:
            print(f"  {why}", file=sys.stderr)
        return 1 if report.runtime_failures else 2
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
