"""Benchmark onnxruntime (CPU) against PyTorch eager for the same DAIF-Net on the same focal stack.

Usage:
    python benchmarks/bench_onnx.py [--checkpoint C] [--cases 5x240x320,5x480x640] [--threads 1,2]
                                    [--repeats 3] [--settings] [--python-op] [--json out.json]

For every case ``SxHxW`` the model is exported at that fixed size (``python -m export onnx`` machinery, in a
temporary folder) twice: the network alone (``net``) and the whole graph (``whole``: network + physics check,
whose ``GaussPSF`` node runs as the native C++ op ``libgausspsf_ort.so``). Both runtimes run the same stack
(the Motorcycle scene rendered through the model's lens), and for every thread count in ``--threads``
(``torch.set_num_threads`` and onnxruntime's ``intra_op_num_threads``) each is timed ``--repeats`` times
after one warm-up. Printed per row: the median latency of each, the ratio torch / onnxruntime (above 1:
onnxruntime is faster) and the largest depth difference. Everything is measured in this one run.

* ``net``: ``DAIFNet.forward`` in torch (``inference_mode``) against the network-only graph.
* ``whole``: network + ``model.confidence.physics_check`` with the graph's fixed PSF radius in torch, against
  the physics graph (native ``GaussPSF``).
* ``--python-op``: the physics graph once more with ``GaussPSF`` as the onnxruntime-extensions Python op
  (the path before the native op), first case and first thread count only (slow).
* ``--settings``: on the first case, onnxruntime options for the whole graph at each thread count: graph
  optimisation level (disable / basic / extended / all), thread spinning off, dynamic int8 quantisation of
  the convolutions (``onnxruntime.quantization.quantize_dynamic``) and an fp16 model
  (``onnxruntime.transformers.float16``, GaussPSF kept fp32), each with its depth against the fp32 default
  (median and largest relative difference; "ok" when the median is within 1 %, the fp16 criterion the
  TensorRT selftest uses).

Without ``--checkpoint`` the shipped model is used; if it is missing, an untrained DAIF-Net of the default
architecture (weights do not change the timing). The machine's load average is printed before and after:
on a shared machine, compare only the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

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


def _threads(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads are a comma-separated list such as 1,2, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return out


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--cases", type=_cases, default=_cases("5x240x320,5x480x640"), help="SxHxW list")
    p.add_argument("--threads", type=_threads, default=_threads("1,2"), help="thread counts (default 1,2)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default 3)")
    p.add_argument("--settings", action="store_true", help="also try onnxruntime options on the first case")
    p.add_argument("--python-op", action="store_true", help="also time the Python GaussPSF op (slow)")
    p.add_argument("--psf-radius", type=int, default=None, help="physics graph PSF radius (default: the export's)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")

    import numpy as np
    import onnxruntime as ort
    import torch

    from export import ort_ops
    from export.onnx_export import OnnxExportConfig, export_onnx, focus_for_stack, reference_stack
    from export.selftest import load_or_untrained, median_ms
    from model.confidence import physics_check

    print(_load(), "(before)", flush=True)
    loaded, note = load_or_untrained(args.checkpoint)
    net = loaded.net.eval()
    params = sum(q.numel() for q in net.parameters())
    print(f"model: {loaded.path or 'untrained default architecture'} ({params / 1e6:.2f} M parameters); "
          f"repeats {args.repeats} (median); torch {torch.__version__}; onnxruntime {ort.__version__} (CPU)")
    if note:
        print(f"note: {note}")
    path, reason = ort_ops_native_status()
    if path is None:
        print(f"error: the native GaussPSF op is not available: {reason}", file=sys.stderr)
        return 2
    print(f"GaussPSF op: {path}")
    results: list[dict[str, Any]] = []

    def session(model_path: Path, threads: int, physics: bool, optimization: str = "all", backend: str = "native",
                spinning: bool = True) -> Any:
        so = ort_ops.session_options(threads, custom_ops=physics, optimization=optimization,
                                     backend=backend if physics else None)
        so.inter_op_num_threads = 1
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])

    def row(**kw: Any) -> None:
        results.append(kw)
        extra = f"  depth max |diff| {kw['depth_max_abs_diff_m'] * 1e3:.4f} mm" if "depth_max_abs_diff_m" in kw else ""
        print(f"{kw['graph']:<6} {kw['case']:>10}  threads {kw['threads']}  {kw.get('setting', 'default'):<22} "
              f"torch {kw['torch_ms']:8.1f} ms  onnxruntime {kw['onnxruntime_ms']:8.1f} ms  "
              f"ratio {kw['torch_ms'] / kw['onnxruntime_ms']:5.2f}{extra}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for ci, (s, h, w) in enumerate(args.cases):
            focus = focus_for_stack(loaded.focus_m, s)
            images, focus_arr, _ = reference_stack(loaded.lens, focus, (w, h), (net.config.near_m, net.config.far_m))
            x = torch.from_numpy(images).permute(0, 3, 1, 2).unsqueeze(0).contiguous()
            f = torch.from_numpy(focus_arr).unsqueeze(0)
            feeds = {"images": np.ascontiguousarray(images.transpose(0, 3, 1, 2)[None]), "focus_m": focus_arr[None]}
            files = {}
            for graph in ("net", "whole"):
                out = Path(tmp) / f"{graph}_{s}x{h}x{w}.onnx"
                cfg = OnnxExportConfig(out=out, graph="net" if graph == "net" else "physics", target="onnxruntime",
                                       image_size=(w, h), stack_size=s,
                                       psf_radius=args.psf_radius if graph == "whole" else None, check=False)
                export_onnx(cfg, loaded=loaded)
                files[graph] = out
            from export.metadata import read_onnx_info

            radius = read_onnx_info(files["whole"]).psf_radius
            case = f"{s}x{h}x{w}"
            for threads in args.threads:
                torch.set_num_threads(threads)

                def run_torch(physics: bool) -> Any:
                    with torch.inference_mode():
                        o = net(x, f)
                        if physics:
                            physics_check(x, f, o.aif, o.depth_m, loaded.lens, max_radius=radius)
                        return o

                ref_depth = run_torch(False).depth_m.numpy()
                for graph in ("net", "whole"):
                    physics = graph == "whole"
                    sess = session(files[graph], threads, physics)
                    t_torch = median_ms(lambda: run_torch(physics), args.repeats)
                    t_ort = median_ms(lambda: sess.run(["depth_m"], feeds), args.repeats)
                    depth = sess.run(["depth_m"], feeds)[0]
                    row(graph=graph, case=case, threads=threads, torch_ms=t_torch, onnxruntime_ms=t_ort,
                        depth_max_abs_diff_m=float(np.abs(depth - ref_depth).max()),
                        psf_radius=radius if physics else None)
                    if physics and args.python_op and ci == 0 and threads == args.threads[0]:
                        py = session(files[graph], threads, True, backend="torch")
                        t_py = median_ms(lambda: py.run(["depth_m"], feeds), 1)
                        row(graph=graph, case=case, threads=threads, setting="GaussPSF Python op", torch_ms=t_torch,
                            onnxruntime_ms=t_py)
                        ort_ops.set_backend("auto")
                    if physics and args.settings and ci == 0:
                        _settings(files["whole"], Path(tmp), threads, feeds, t_torch, case, session, row, args.repeats)
    print(_load(), "(after)", flush=True)
    if args.json is not None:
        from model.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"threads": args.threads, "repeats": args.repeats,
                                                 "results": results}, indent=2))
    return 0


def ort_ops_native_status() -> tuple[Any, str]:
    from export.ort_native import native_status

    return native_status()


def _settings(model_path: Path, tmp: Path, threads: int, feeds: dict[str, Any], t_torch: float, case: str,
              session: Callable[..., Any], row: Callable[..., None], repeats: int) -> None:
    """onnxruntime options for the whole graph; variants with other numerics report their depth difference."""
    import numpy as np
    import onnx

    from export.selftest import median_ms

    base = session(model_path, threads, True)
    ref = base.run(["depth_m"], feeds)[0]

    def measure(label: str, sess: Any, numerics: bool = False) -> None:
        t = median_ms(lambda: sess.run(["depth_m"], feeds), repeats)
        kw: dict[str, Any] = {"graph": "whole", "case": case, "threads": threads, "setting": label,
                              "torch_ms": t_torch, "onnxruntime_ms": t}
        if numerics:
            depth = sess.run(["depth_m"], feeds)[0]
            rel = np.abs(depth - ref) / np.maximum(np.abs(ref), 1e-6)
            kw.update(depth_rel_median=float(np.median(rel)), depth_rel_p99=float(np.quantile(rel, 0.99)),
                      depth_rel_max=float(rel.max()), within_1_percent=bool(np.median(rel) <= 0.01))
        row(**kw)
        if numerics:
            print(f"{'':>48}depth vs fp32: median {kw['depth_rel_median']:.2%}, p99 {kw['depth_rel_p99']:.2%}, "
                  f"max {kw['depth_rel_max']:.2%} -> {'ok' if kw['within_1_percent'] else 'NOT within 1 %'}",
                  flush=True)

    for level in ("disable", "basic", "extended", "all"):
        measure(f"optimization={level}", session(model_path, threads, True, optimization=level))
    if threads > 1:
        measure("spinning off", session(model_path, threads, True, spinning=False))
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q_path = tmp / "whole_int8.onnx"
        quantize_dynamic(str(model_path), str(q_path), op_types_to_quantize=["Conv"], weight_type=QuantType.QUInt8)
        measure("int8 dynamic (Conv)", session(q_path, threads, True), numerics=True)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"{'':>48}int8 dynamic quantisation failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(model_path))
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=["GaussPSF"])
        h_path = tmp / "whole_fp16.onnx"
        onnx.save(half, str(h_path))
        measure("fp16", session(h_path, threads, True), numerics=True)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"{'':>48}fp16 failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")


if __name__ == "__main__":
    raise SystemExit(main())
