"""Evaluate a model on focal stacks: metric depth errors, AIF quality, or held-back slice re-rendering.

For stacks with ground-truth depth (depth.npy) it reports AbsRel, SqRel, RMSE, RMSE log and delta 1-3 in
metric depth (no scale alignment), plus AIF PSNR/SSIM where aif.png is known. --baseline adds a classical
depth-from-focus baseline (per-pixel argmax of a focus measure, interpolated) on the same stacks.
For stacks without ground truth it holds back each inner focus slice in turn, predicts from the others,
re-renders the held-back slice from the prediction through the stack's lens and reports how well it matches
(PSNR, SSIM, L1), beside the same score for a classical reference (depth from focus and a sharpest-pixel
composite AIF from the same kept slices, re-rendered the same way).
--refine also scores the network's predictions after test-time refinement on each stack with ground truth (model.refine;
about 40 s per 320x240 stack and start on two CPU cores, two starts by default), next to the network alone.
--fast-refine scores the fast refinement (model.refine.FAST_REFINE: twice the relative-blur sweep, then filling untrusted
pixels from trusted ones along colour edges, no gradient fits; ~5.5 s per 320x240 stack on two CPU threads), on stacks
with ground truth and, held back as above, on stacks without.

examples:
  python -m model.evaluate --data data/eval
  python -m model.evaluate --data data/eval --checkpoint runs/x/best.pt --baseline --json
  python -m model.evaluate --data data/eval --baseline --refine
  python -m model.evaluate --data data/real --fast-refine      # real sweeps: held-back slices, three methods
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import numpy as np

    from model.optics import ThinLensLike

__all__ = ["classical_prediction", "evaluate_folder", "holdout_scores", "main", "render_slice"]


def render_slice(aif: np.ndarray, depth_m: np.ndarray, focus_m: float, lens: ThinLensLike) -> np.ndarray:
    """Render the slice focused at ``focus_m`` from an all-in-focus image and its depth (thin lens, Gaussian PSF).

    The one re-rendering of the held-back evaluation: the network's prediction and the classical reference
    both go through it, so they are judged through the same optics.

    Args:
        aif: ``(H, W, 3)`` all-in-focus image in [0, 1].
        depth_m: ``(H, W)`` depth, metres (each > the focal length).
        focus_m: focus distance of the slice to render, metres.
        lens: the stack's lens (pixel pitch at the images' resolution).

    Returns:
        float32 ``(H, W, 3)``: each pixel blurred with ``sigma = c / (4 p)`` of its own depth
        (:func:`model.optics.coc_sigma_px`), in the project's gather form (:func:`model.render.gauss_psf`).
    """
    import numpy as np
    import torch

    from model.optics import coc_sigma_px
    from model.render import capped_window_radius, gauss_psf

    img = np.asarray(aif, np.float32)
    depth = np.asarray(depth_m, np.float64)
    if img.ndim != 3 or img.shape[-1] != 3 or depth.shape != img.shape[:2]:
        raise ValueError(f"need aif (H, W, 3) and depth (H, W) of the same size, got {img.shape} and {depth.shape}")
    sigma = np.asarray(coc_sigma_px(depth, float(focus_m), lens), np.float32)
    sig_t = torch.from_numpy(sigma)[None, None]
    img_t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = gauss_psf(img_t, sig_t, radius=capped_window_radius(float(sig_t.max())))
    return out[0].permute(1, 2, 0).numpy().astype(np.float32, copy=False)


def classical_prediction(images: np.ndarray, focus_m: Sequence[float] | np.ndarray,
                         window: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """The classical reference: depth from focus plus a sharpest-pixel composite all-in-focus image.

    Args:
        images: ``(S, H, W, 3)`` float in [0, 1], ``S >= 2``.
        focus_m: ``(S,)`` focus distances, metres.
        window: focus-measure window, pixels (odd), for both the depth and the composite.

    Returns:
        ``(depth_m (H, W) float32, aif (H, W, 3) float32)``: :func:`model.baseline_dff.depth_from_focus`, and
        for each pixel the frame whose sum-modified-Laplacian focus measure is largest.
    """
    import numpy as np

    from model.baseline_dff import depth_from_focus, focus_measure

    imgs = np.asarray(images, np.float32)
    depth = depth_from_focus(imgs, focus_m, window=window)
    best = np.argmax(focus_measure(imgs, window), axis=0)  # (H, W)
    aif = np.take_along_axis(imgs, best[None, :, :, None], axis=0)[0]
    return np.asarray(depth, np.float32), aif


def _image_scores(rendered: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    import numpy as np

    from model.metrics import psnr, ssim

    return {"psnr": psnr(rendered, ref), "ssim": ssim(rendered, ref), "l1": float(np.abs(rendered - ref).mean())}


def holdout_scores(runner: Any, stack: Any, reference: bool = True, ignore_lens: bool = False,
                   swap: bool = False, refiner: Any = None) -> dict[str, dict[str, float]]:
    """Hold back each inner slice, predict from the others, re-render it; mean PSNR (dB) / SSIM / L1 over slices.

    For stacks without ground truth: a prediction is judged by how well the slice it was not shown, rendered
    from its depth and AIF through the stack's optics (:func:`render_slice`), matches the real one. The inner
    slices are those between the nearest and the farthest focus distance.

    Args:
        runner: a runner (:mod:`model.runners`). A lens-aware model is given the stack's lens
            (:func:`model.runners.bind_lens`) unless it already holds it; a lens-specific one must match it
            unless ``ignore_lens`` (its depth is then rendered through the stack's lens all the same).
        stack: a :class:`model.formats.FocalStack` with focus distances and at least 3 frames.
        reference: also score the classical reference (:func:`classical_prediction` on the same kept slices).
        ignore_lens: see ``runner``.
        swap: with ``reference``, also score the parts swapped, to show whether a difference comes from the depth or
            the AIF: ``network_depth_classical_aif`` and ``classical_depth_network_aif``.
        refiner: a refining wrapper of ``runner`` (:class:`model.refine.RefiningRunner`): also score its refinement
            of the same network prediction (``refined``), so the network runs once per held-back slice.

    Returns:
        ``{"network": {"psnr", "ssim", "l1"}, "classical": {...}}`` (``classical`` only with ``reference``; the
        swapped pairs only with ``swap``; ``refined`` only with ``refiner``).

    Raises:
        ValueError: fewer than 3 frames, no focus distances, or a lens the model cannot take.
    """
    import numpy as np

    from model.runners import bind_lens

    s = len(stack)
    src = stack.path / "stack.json" if stack.path is not None else "stack"
    if s < 3:
        raise ValueError(f"{src}: held-back evaluation needs at least 3 frames, got {s}")
    if stack.focus_m is None:
        raise ValueError(f"{src}: held-back evaluation needs the frames' focus distances")
    if refiner is not None and getattr(refiner, "inner", None) is not runner:
        raise ValueError("refiner must wrap the runner it refines the predictions of")
    bound = runner if refiner is None else refiner  # binding the wrapper binds the runner too
    if getattr(bound, "lens", None) != stack.lens:
        bind_lens(bound, stack.lens, stack.focus_m, str(src), ignore_lens=ignore_lens)
    net = getattr(getattr(getattr(runner, "inner", runner), "model", None), "net", None)
    if getattr(net, "lens_aware", False) and runner.lens != stack.lens:
        raise RuntimeError(f"{src}: the lens-aware model was not given the stack's lens")  # bind_lens's contract
    order = [int(i) for i in np.argsort(stack.focus_m, kind="stable")]
    rows: dict[str, list[dict[str, float]]] = {"network": [], "classical": [], "network_depth_classical_aif": [],
                                               "classical_depth_network_aif": [], "refined": []}
    for k in order[1:-1]:
        keep = [i for i in order if i != k]
        images, focus = stack.images[keep], stack.focus_m[keep]
        target, focus_k = stack.images[k], float(stack.focus_m[k])
        pred = runner.predict(images, focus)
        rows["network"].append(_image_scores(render_slice(pred.aif, pred.depth_m, focus_k, stack.lens), target))
        if refiner is not None:
            ref = refiner.refine(images, focus, pred)
            rows["refined"].append(_image_scores(render_slice(ref.aif, ref.depth_m, focus_k, stack.lens), target))
        if reference:
            depth, aif = classical_prediction(images, focus)
            rows["classical"].append(_image_scores(render_slice(aif, depth, focus_k, stack.lens), target))
            if swap:
                rows["network_depth_classical_aif"].append(
                    _image_scores(render_slice(aif, pred.depth_m, focus_k, stack.lens), target))
                rows["classical_depth_network_aif"].append(
                    _image_scores(render_slice(pred.aif, depth, focus_k, stack.lens), target))
    return {name: {key: float(np.mean([r[key] for r in rs])) for key in rs[0]} for name, rs in rows.items() if rs}


def evaluate_folder(data: Path, model: Path | None = None, runtime: str = "auto", baseline: bool = False,
                    ignore_lens: bool = False, device: str | None = None, refine: bool = False,
                    sweep: bool = False, shard: tuple[int, int] | None = None,
                    fast_refine: bool = False, swap: bool = False) -> dict[str, Any]:
    """Evaluate every stack under ``data`` (with ``shard=(i, n)``: stacks i, i + n, i + 2n, ... in path order).

    Returns ``{"model": {...}, "refined": {...}, "baseline": {...}, "aif": .., "heldout": {...},
    "heldout_classical": {...}, "per_stack": [...]}`` (``refined`` and its ``aif_refined`` only with ``refine``;
    ``baseline`` only with ``baseline``; ``swept`` (the network's depth after the relative-blur sweep,
    :mod:`model.defocus_sweep`) only with ``sweep``; ``fast_refined`` (the depth after :data:`model.refine.FAST_REFINE`)
    only with ``fast_refine``; the held-back scores for stacks without ground truth, see :func:`holdout_scores`: the
    network's under ``heldout``, the classical reference's under ``heldout_classical``, with ``fast_refine`` the fast
    refinement's under ``heldout_fast_refined``; with ``swap`` the network's depth with the reference's AIF under
    ``heldout_network_depth_classical_aif`` and the reverse under ``heldout_classical_depth_network_aif``).
    """
    from tqdm import tqdm

    from model.formats import find_stacks, read_stack
    from model.metrics import aggregate, depth_metrics, psnr, ssim
    from model.runners import bind_lens, create_runner

    stacks = find_stacks(data)
    if not stacks:
        raise FileNotFoundError(f"{data}: no focal-stack/1 folder (stack.json) found")
    if shard is not None:
        i, n = shard
        if not 0 <= i < n:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got ({i}, {n})")
        if i >= len(stacks):
            raise ValueError(f"{data}: shard {i}/{n} is empty (only {len(stacks)} stacks)")
        stacks = stacks[i::n]
    runner = create_runner(runtime, model, device=device, with_confidence=False)
    refiner = None
    if refine:
        from model.refine import RefiningRunner

        refiner = RefiningRunner(runner, device=device, progress=True)
    fast = None
    if fast_refine:
        from model.refine import FAST_REFINE, RefiningRunner

        fast = RefiningRunner(runner, FAST_REFINE, device=device)
    per_stack: list[dict[str, Any]] = []
    keys = ("model", "aif", "refined", "aif_refined", "swept", "fast_refined", "baseline", "heldout",
            "heldout_classical", "heldout_fast_refined", "heldout_network_depth_classical_aif",
            "heldout_classical_depth_network_aif")
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
        # each refiner (when used) wraps the runner: binding it binds both, so its fit uses this stack's lens
        for bound in [w for w in (refiner, fast) if w is not None] or [runner]:
            bind_lens(bound, st.lens, st.focus_m, str(folder / "stack.json"), ignore_lens=ignore_lens)
        row: dict[str, Any] = {"stack": str(folder.relative_to(data)) if folder != data else folder.name}
        if st.depth is not None and (st.depth > 0).any():
            pred = runner.predict(st.images, st.focus_m)
            score(row, st, pred, "model", "aif")
            if refiner is not None:
                score(row, st, refiner.refine(st.images, st.focus_m, pred), "refined", "aif_refined")
            if sweep:
                from model.defocus_sweep import sweep_depth
                from model.runners import working_range_of

                swept = sweep_depth(st.images, st.focus_m, runner.lens, pred.depth_m, working_range_of(runner))
                record(row, "swept", depth_metrics(swept, st.depth))
            if fast is not None:  # its AIF is the network's (no fit), so only its depth is scored
                record(row, "fast_refined", depth_metrics(fast.refine(st.images, st.focus_m, pred).depth_m, st.depth))
            if baseline:
                from model.baseline_dff import depth_from_focus

                record(row, "baseline", depth_metrics(depth_from_focus(st.images, st.focus_m), st.depth))
        else:
            held = holdout_scores(runner, st, ignore_lens=ignore_lens, swap=swap, refiner=fast)
            record(row, "heldout", held["network"])
            record(row, "heldout_classical", held["classical"])
            for part in ("network_depth_classical_aif", "classical_depth_network_aif"):
                if part in held:
                    record(row, f"heldout_{part}", held[part])
            if fast is not None:
                record(row, "heldout_fast_refined", held["refined"])
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
        labels = {"model": "DAIF-Net", "refined": "DAIF-Net + refine", "swept": "DAIF-Net + sweep",
                  "fast_refined": "DAIF-Net + fast refine", "baseline": "depth-from-focus"}
        for name in ("model", "refined", "fast_refined", "swept", "baseline"):
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
        lines.append(f"held-back slices re-rendered ({int(h['stacks'])} stacks without ground truth):")
        labels = {"heldout": "DAIF-Net", "heldout_fast_refined": "DAIF-Net + fast refine",
                  "heldout_classical": "depth-from-focus + sharpest-pixel AIF",
                  "heldout_network_depth_classical_aif": "DAIF-Net depth + sharpest-pixel AIF",
                  "heldout_classical_depth_network_aif": "depth-from-focus + DAIF-Net AIF"}
        for name in ("heldout", "heldout_fast_refined", "heldout_classical", "heldout_network_depth_classical_aif",
                     "heldout_classical_depth_network_aif"):
            if name in result:
                r = result[name]
                lines.append(f"  {labels[name]:<38} PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}, L1 {r['l1']:.4f}")
    return "\n".join(lines)


def _shard(text: str) -> tuple[int, int]:
    from model.eval_suite import parse_shard  # the one I/N parser (model.eval_suite, model.distill)

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder holding focal-stack/1 folders")
    p.add_argument("--checkpoint", "--model", dest="model", type=Path, default=None, help="model (default: the shipped one)")
    from model.runners import RUNTIMES

    p.add_argument("--runtime", choices=RUNTIMES, default="auto")
    p.add_argument("--baseline", action="store_true", help="also score the classical depth-from-focus baseline")
    p.add_argument("--ignore-lens", action="store_true", help="evaluate even if a stack's lens differs from the model's")
    p.add_argument("--refine", action="store_true",
                   help="also score test-time refinement on each stack (model.refine; slow: ~80 s per 320x240 stack on 2 CPU cores with the default two starts)")
    p.add_argument("--sweep", action="store_true",
                   help="also score the network's depth after the relative-blur sweep (model.defocus_sweep; ~0.25-0.3 s per 320x240 stack on 2 CPU cores)")
    p.add_argument("--fast-refine", action="store_true",
                   help="also score the fast refinement (model.refine.FAST_REFINE: sweep + the refinement's fill, twice, "
                        "no gradient fits; ~5.5 s per 320x240 stack on two CPU threads), with ground truth or held back")
    p.add_argument("--swap", action="store_true",
                   help="stacks without ground truth: also re-render held-back slices from the network's depth with the "
                        "classical AIF and the reverse, to show whether a difference lies in the depth or the AIF")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="evaluate stacks I, I+N, I+2N, ... only (N processes side by side; merge the JSON yourself)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    from model.cli import setup_logging

    setup_logging()
    result = evaluate_folder(args.data, args.model, args.runtime, args.baseline, args.ignore_lens, args.device,
                             refine=args.refine, sweep=args.sweep, fast_refine=args.fast_refine, swap=args.swap,
                             shard=args.shard)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(lambda: main(sys.argv[1:]))
