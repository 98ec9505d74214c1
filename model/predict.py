"""Predict metric depth and the all-in-focus image for every focal stack under a folder.

For each focal-stack/1 folder X under --data, writes OUT/X/ with depth.npy (float32 H x W, metres),
aif.png, confidence.npy (float32 in [0, 1], from re-rendering the stack through the lens model),
depth.png (colour-mapped, with a scale in metres) and figure.png (input frames, AIF, depth, defocus
maps, re-rendered stack and residual). Each output folder is written atomically.

examples:
  python -m model.predict --data recordings/ --out predictions/
  python -m model.predict --data stacks/ --out pred/ --runtime onnxruntime --model daifnet.onnx
  python -m model.predict --data stacks/ --out pred/ --refine    # slower, more accurate (model.refine)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PredictConfig", "predict_folder", "write_prediction", "main"]


@dataclass
class PredictConfig:
    """Options of ``python -m model.predict``."""

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder holding focal-stack/1 folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output root; one folder per input stack")
    p.add_argument("--checkpoint", "--model", dest="model", type=Path, default=None,
                   help="checkpoint (.pt), ONNX file or TensorRT engine (default: the shipped model)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnxruntime", "tensorrt"], default="auto",
                   help="inference runtime (default: by the model file; PyTorch for checkpoints)")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="skip depth.png and figure.png")
    p.add_argument("--overwrite", action="store_true", help="replace existing output folders")
    p.add_argument("--ignore-lens", action="store_true", help="run even if a stack's lens differs from the model's")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda); default: cuda when available")
    p.add_argument("--refine", action="store_true",
                   help="refine each prediction on its own stack through the lens model, then fill textureless "
                        "regions from confident ones (model.refine; ~40 s per 320x240 stack on CPU)")
    p.add_argument("--refine-blur-scale", type=float, default=1.08, metavar="K",
                   help="with --refine: the fit's Gaussian blur in units of the moment-matched c/(4p); 1.08 (default) "
                        "matches a lens whose defocus blur is a uniform disc, 1.0 one whose blur is Gaussian-like")
    return p


def write_prediction(folder: Path, stack, pred, lens, near_m: float, far_m: float, figures: bool = True, overwrite: bool = False) -> Path:
    """Write one prediction folder (FORMATS.md "Predictions") atomically."""
    import numpy as np

    from model.atomic import atomic_dir, atomic_save_npy, atomic_write_bytes
    from model.formats import encode_png
    from model.optics import coc_sigma_px
    from model.visualize import depth_png_with_scale, prediction_panel

    with atomic_dir(folder, overwrite=overwrite) as tmp:
        atomic_save_npy(tmp / "depth.npy", pred.depth_m.astype(np.float32))
        atomic_write_bytes(tmp / "aif.png", encode_png(pred.aif))
        if pred.confidence is not None:
            atomic_save_npy(tmp / "confidence.npy", pred.confidence.astype(np.float32))
        if figures:
            depth_png_with_scale(tmp / "depth.png", pred.depth_m, near_m, far_m)
            sigma = np.stack([coc_sigma_px(pred.depth_m.astype(np.float64), float(f), lens) for f in stack.focus_m])
            prediction_panel(
                tmp / "figure.png", stack.images, list(stack.focus_m), pred.depth_m, pred.aif, near_m, far_m,
                sigma_px=sigma, rendered=pred.rendered, confidence=pred.confidence, gt_depth_m=stack.depth,
                title=str(stack.path.name if stack.path else ""),
            )
    return folder


def predict_folder(cfg: PredictConfig) -> list[Path]:
    """Run the model on every stack under ``cfg.data``; returns the output folders written."""
    from tqdm import tqdm

    from model.checkpoint import check_lens_matches
    from model.formats import find_stacks, read_stack
    from model.runners import create_runner

    stacks = find_stacks(cfg.data)
    if not stacks:
        raise FileNotFoundError(f"{cfg.data}: no focal-stack/1 folder (stack.json) found")
    targets = []
    for folder in stacks:
        rel = folder.relative_to(cfg.data)
        dst = cfg.out / rel if str(rel) != "." else cfg.out / folder.name
        if dst.exists() and not cfg.overwrite:
            raise FileExistsError(f"{dst}: already exists (use --overwrite to replace)")
        targets.append((folder, dst))
    runner = create_runner(cfg.runtime, cfg.model, device=cfg.device)
    if cfg.refine:
        from model.refine import RefineConfig, RefiningRunner

        runner = RefiningRunner(runner, RefineConfig(psf_sigma_scale=cfg.refine_blur_scale), device=cfg.device,
                                progress=True)
    near_m, far_m = _range_of(runner)
    written = []
    for folder, dst in tqdm(targets, desc="predict", unit="stack", disable=len(targets) < 2):
        stack = read_stack(folder)
        if not cfg.ignore_lens:
            check_lens_matches(runner.lens, stack.lens, str(folder / "stack.json"))
        pred = runner.predict(stack.images, stack.focus_m)
        written.append(write_prediction(dst, stack, pred, runner.lens, near_m, far_m, cfg.figures, cfg.overwrite))
    return written


def _range_of(runner) -> tuple[float, float]:
    net = getattr(getattr(runner, "model", None), "net", None)
    if net is not None:
        return net.config.near_m, net.config.far_m
    rng = getattr(runner, "working_range_m", None)
    if rng:
        return float(rng[0]), float(rng[1])
    from model.optics import working_range_m

    return working_range_m(runner.focus_m, runner.lens)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from model.cli import setup_logging

    setup_logging()
    cfg = PredictConfig(data=args.data, out=args.out, model=args.model, runtime=args.runtime, figures=args.figures,
                        overwrite=args.overwrite, ignore_lens=args.ignore_lens, device=args.device, refine=args.refine,
                        refine_blur_scale=args.refine_blur_scale)
    written = predict_folder(cfg)
    print(f"wrote {len(written)} prediction folder(s) under {cfg.out}")
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
