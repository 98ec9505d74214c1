"""Benchmark onnxruntime (CPU) against PyTorch eager for the same DAIF-Net on the same focal stack.

Usage:
    python benchmarks/bench_onnx.py [--checkpoint C] [--cases 5x240x320,5x256x256] [--repeats 5]
                                    [--threads 1] [--physics] [--psf-radius R] [--json out.json]

For every case ``SxHxW`` the model is exported to ONNX at that fixed size (``python -m export onnx``
machinery, in a temporary folder), then both runtimes run the same stack (the Motorcycle scene rendered
through the model's lens) ``--repeats`` times after one warm-up run. Printed: the median latency of each,
the ratio torch / onnxruntime (above 1: onnxruntime is faster) and the largest depth difference between
them, all from one run of this script.

* ``net`` (always): ``DAIFNet.forward`` in torch (``inference_mode``) against the network-only graph.
* ``physics`` (``--physics``): network + physics check (``model.confidence.physics_check`` with the graph's
  fixed PSF radius) against the physics graph, whose GaussPSF node runs as an onnxruntime-extensions Python
  op (backend ``model.render``). At the default lens the radius is 32 px, which makes this slow.

Without ``--checkpoint`` the shipped model is used; if it is missing, an untrained DAIF-Net of the default
architecture (width 16, depth 4: the default model's size) - weights do not change the timing. One thread by
default so numbers are stable on a shared machine; the default run takes about a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


def _cases(text: str) -> list[tuple[int, int, int]]:
    out = []
    for part in text.split(","):
        try:
            s, h, w = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"cases are SxHxW, e.g. 5x240x320, got {part!r}") from None
        if s < 2 or h < 16 or w < 16:
            raise argparse.ArgumentTypeError(f"case {part!r}: need S >= 2 and H, W >= 16")
        out.append((s, h, w))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--cases", type=_cases, default=_cases("5x240x320,5x256x256"), help="SxHxW list")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per runtime and case (default 5)")
    p.add_argument("--threads", type=int, default=1, help="threads for both runtimes (default 1)")
    p.add_argument("--physics", action="store_true", help="also time the physics graph")
    p.add_argument("--psf-radius", type=int, default=None, help="physics graph PSF radius (default: the export's)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import torch

    from export.onnx_export import OnnxExportConfig, export_onnx, reference_stack
    from export.runtime import OnnxRunner
    from export.selftest import _load_or_untrained, median_ms
    from model.confidence import physics_check

    torch.set_num_threads(args.threads)
    loaded, note = _load_or_untrained(args.checkpoint)
    net = loaded.net.eval()
    params = sum(p.numel() for p in net.parameters())
    print(f"model: {loaded.path or 'untrained default architecture'} (width {net.config.width}, depth "
          f"{net.config.depth}, {params / 1e6:.2f} M parameters); threads {args.threads}; repeats {args.repeats}; "
          f"torch {torch.__version__}")
    if note:
        print(f"note: {note}")
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)")
    graphs = ["net"] + (["physics"] if args.physics else [])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for s, h, w in args.cases:
            from export.onnx_export import _focus_for

            focus = _focus_for(loaded.focus_m, s)
            images, focus_arr, _ = reference_stack(loaded.lens, focus, (w, h), (net.config.near_m, net.config.far_m))
            x = torch.from_numpy(images).permute(0, 3, 1, 2).unsqueeze(0).contiguous()
            f = torch.from_numpy(focus_arr).unsqueeze(0)
            for graph in graphs:
                out = Path(tmp) / f"{graph}_{s}x{h}x{w}.onnx"
                cfg = OnnxExportConfig(out=out, graph=graph, target="onnxruntime", image_size=(w, h), stack_size=s,
                                       psf_radius=args.psf_radius if graph == "physics" else None, check=False)
                export_onnx(cfg, loaded=loaded)
                runner = OnnxRunner(out, with_confidence=False, threads=args.threads)
                radius = runner.info.psf_radius

                def run_torch() -> Any:
                    with torch.inference_mode():
                        o = net(x, f)
                        if graph == "physics":
                            physics_check(x, f, o.aif, o.depth_m, loaded.lens, max_radius=radius)
                        return o

                feeds = (np.ascontiguousarray(images.transpose(0, 3, 1, 2)[None]), focus_arr[None])
                t_torch = median_ms(run_torch, args.repeats)
                t_ort = median_ms(lambda: runner.run(*feeds), args.repeats)
                diff = float(np.abs(runner.run(*feeds)["depth_m"] - run_torch().depth_m.numpy()).max())
                row = {"graph": graph, "case": f"{s}x{h}x{w}", "torch_ms": t_torch, "onnxruntime_ms": t_ort,
                       "ratio_torch_over_ort": t_torch / t_ort, "depth_max_abs_diff_m": diff, "psf_radius": radius}
                results.append(row)
                print(f"{graph:<8} {row['case']:>10}  torch {t_torch:9.1f} ms  onnxruntime {t_ort:9.1f} ms  "
                      f"ratio {row['ratio_torch_over_ort']:5.2f}  depth max |diff| {diff * 1e3:.4f} mm"
                      + (f"  (PSF radius {radius})" if graph == "physics" else ""), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
