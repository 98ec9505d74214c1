"""Evaluate a model on focal stacks: metric depth errors, AIF quality, or held-back slice re-rendering.

For stacks with ground-truth depth (depth.npy) it reports AbsRel, SqRel, RMSE, RMSE log and delta 1-3 in
metric depth (no scale alignment), plus AIF PSNR/SSIM where aif.png is known. --baseline adds a classical
depth-from-focus baseline (per-pixel argmax of a focus measure, interpolated) on the same stacks.
For stacks without ground truth it holds back each inner focus slice in turn, predicts from the others,
re-renders the held-back slice from the prediction and reports how well it matches (PSNR, SSIM, L1).
--refine also scores the network's predictions after test-time refinement on each stack with ground truth (model.refine;
about 40 s per 320x240 stack on two CPU cores), next to the network alone.

examples:
  python -m model.evaluate --data data/eval
  python -m model.evaluate --data data/eval --checkpoint runs/x/best.pt --baseline --json
  python -m model.evaluate --data data/eval --baseline --refine
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["evaluate_folder", "holdout_scores", "main"]


def holdout_scores(runner, stack) -> dict[str, float]:
    """Hold back each inner slice, predict from the rest, re-render it; mean PSNR/SSIM/L1 over slices."""
    import numpy as np
    import torch

    from model.metrics import psnr, ssim
    from model.optics import coc_sigma_px
    from model.render import capped_window_radius, gauss_psf

    s = len(stack)
    if s < 3:
        raise ValueError(f"{stack.path}: held-back evaluation needs at least 3 frames, got {s}")
    rows = []
    for k in range(1, s - 1):
        keep = [i for i in range(s) if i != k]
        pred = runner.predict(stack.images[keep], stack.focus_m[keep])
        sigma = coc_sigma_px(pred.depth_m.astype(np.float64), float(stack.focus_m[k]), runner.lens)
        sig_t = torch.from_numpy(sigma.astype(np.float32))[None, None]
        img_t = torch.from_numpy(pred.aif).permute(2, 0, 1)[None]
        with torch.no_grad():
            out = gauss_psf(img_t, sig_t, radius=capped_window_radius(float(sig_t.max())))
        rendered = out[0].permute(1, 2, 0).numpy()
        ref = stack.images[k]
        rows.append({"psnr": psnr(rendered, ref), "ssim": ssim(rendered, ref), "l1": float(np.abs(rendered - ref).mean())})
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def evaluate_folder(data: Path, model: Path | None = None, runtime: str = "auto", baseline: bool = False,
                    ignore_lens: bool = False, device: str | None = None, refine: bool = False) -> dict[str, Any]:
    """Evaluate every stack under ``data``.

    Returns ``{"model": {...}, "refined": {...}, "baseline": {...}, "aif": .., "per_stack": [...]}`` (``refined``
    and its ``aif_refined`` only with ``refine``; ``baseline`` only with ``baseline``).
    """
    from tqdm import tqdm

    from model.formats import find_stacks, read_stack
    from model.metrics import aggregate, depth_metrics, psnr, ssim
    from model.runners import bind_lens, create_runner

    stacks = find_stacks(data)
    if not stacks:
        raise FileNotFoundError(f"{data}: no focal-stack/1 folder (stack.json) found")
    runner = create_runner(runtime, model, device=device, with_confidence=False)
    refiner = None
    if refine:
        from model.refine import RefiningRunner

        refiner = RefiningRunner(runner, device=device, progress=True)
    per_stack: list[dict[str, Any]] = []
    keys = ("model", "aif", "refined", "aif_refined", "baseline", "heldout")
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in keys}

    def record(row: dict[str, Any], key: str, scores: dict[str, float]) -> None:
        rows[key].append(scores)
        row[key] = scores

    def score(row: dict[str, Any], st, pred, depth_key: str, aif_key: str) -> None:
        record(row, depth_key, depth_metrics(pred.depth_m, st.depth))
        if st.aif is not None:
            record(row, aif_key, {"aif_psnr": psnr(pred.aif, st.aif), "aif_ssim": ssim(pred.aif, st.aif)})

    for folder in tqdm(stacks, desc="evaluate", unit="stack", disable=len(stacks) < 2):
        st = read_stack(folder)
        bind_lens(runner, st.lens, st.focus_m, str(folder / "stack.json"), ignore_lens=ignore_lens)
        row: dict[str, Any] = {"stack": str(folder.relative_to(data)) if folder != data else folder.name}
        if st.depth is not None and (st.depth > 0).any():
            pred = runner.predict(st.images, st.focus_m)
            score(row, st, pred, "model", "aif")
            if refiner is not None:
                score(row, st, refiner.refine(st.images, st.focus_m, pred), "refined", "aif_refined")
            if baseline:
                from model.baseline_dff import depth_from_focus

                record(row, "baseline", depth_metrics(depth_from_focus(st.images, st.focus_m), st.depth))
        else:
            record(row, "heldout", holdout_scores(runner, st))
        per_stack.append(row)
    result: dict[str, Any] = {"runtime": runner.name, "stacks": len(stacks), "per_stack": per_stack}
    for key, key_rows in rows.items():
        if key_rows:
            result[key] = aggregate(key_rows)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the aggregate numbers."""
    lines = []
    keys = ["abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3"]
    if "model" in result:
        lines.append(f"{'method':<22}" + "".join(f"{k:>10}" for k in keys) + f"{'stacks':>8}")
        labels = {"model": "DAIF-Net", "refined": "DAIF-Net + refine", "baseline": "depth-from-focus"}
        for name in ("model", "refined", "baseline"):
            if name in result:
                r = result[name]
                label = labels[name]
                lines.append(f"{label:<22}" + "".join(f"{r[k]:>10.4f}" for k in keys) + f"{int(r['stacks']):>8}")
    if "aif" in result:
        lines.append(f"AIF: PSNR {result['aif']['aif_psnr']:.2f} dB, SSIM {result['aif']['aif_ssim']:.4f}")
    if "aif_refined" in result:
        r = result["aif_refined"]
        lines.append(f"AIF after refine: PSNR {r['aif_psnr']:.2f} dB, SSIM {r['aif_ssim']:.4f}")
    if "heldout" in result:
        h = result["heldout"]
        lines.append(f"held-back slices re-rendered: PSNR {h['psnr']:.2f} dB, SSIM {h['ssim']:.4f}, L1 {h['l1']:.4f} "
                     f"({int(h['stacks'])} stacks without ground truth)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder holding focal-stack/1 folders")
    p.add_argument("--checkpoint", "--model", dest="model", type=Path, default=None, help="model (default: the shipped one)")
    from model.runners import RUNTIMES

    p.add_argument("--runtime", choices=RUNTIMES, default="auto")
    p.add_argument("--baseline", action="store_true", help="also score the classical depth-from-focus baseline")
    p.add_argument("--ignore-lens", action="store_true", help="evaluate even if a stack's lens differs from the model's")
    p.add_argument("--refine", action="store_true",
                   help="also score test-time refinement on each stack (model.refine; slow: ~40 s per 320x240 stack on CPU)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    from model.cli import setup_logging

    setup_logging()
    result = evaluate_folder(args.data, args.model, args.runtime, args.baseline, args.ignore_lens, args.device,
                             refine=args.refine)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
