"""Cost of the relative-blur sweep (model.defocus_sweep) against the network alone, one 5 x 240 x 320 stack.

Both are timed alternately in the same run (the shipped model, CPU), medians over --repeats; the ratio
(network + sweep) / network is what the option adds to each stack. The sweep without its gate
(``SweepConfig.min_gain=0``: the cheapest hypothesis everywhere) is timed in the same loop, to show what the
gate costs. With --onnx also the exported graphs in
onnxruntime: the network alone against the network with the sweep in the graph (`python -m export onnx
--graph net [--sweep]`), alternately, and the largest depth difference between the in-graph and the PyTorch sweep.

usage: python benchmarks/bench_sweep.py [--repeats 5] [--threads N] [--onnx]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch (and onnxruntime) CPU threads (0: their default)")
    p.add_argument("--onnx", action="store_true", help="also time the exported graphs with and without the sweep")
    args = p.parse_args()

    import numpy as np
    import torch

    from model.defocus_sweep import SweepConfig, sweep_depth
    from model.runners import bind_lens, create_runner, working_range_of
    from model.synth.layered import render_stack_layered
    from model.synth.scenes import random_scene

    if args.threads:
        torch.set_num_threads(args.threads)
    runner = create_runner("torch", None, device="cpu", with_confidence=False)
    focus = np.array([1.0, 1.5, 2.5, 4.0, 6.0])
    aif, depth = random_scene(np.random.default_rng(0), 240, 320, 0.8, 8.0, split="held_out")
    stack = render_stack_layered(aif, depth, focus, runner.lens)
    bind_lens(runner, runner.lens, focus, "benchmark")
    times: dict[str, list[float]] = {"net": [], "sweep": [], "ungated": []}
    ungated = SweepConfig(min_gain=0.0)
    runner.predict(stack, focus)  # warm-up
    for _ in range(max(1, args.repeats)):
        t = time.perf_counter()
        pred = runner.predict(stack, focus)
        times["net"].append(time.perf_counter() - t)
        t = time.perf_counter()
        sweep_depth(stack, focus, runner.lens, pred.depth_m, working_range_of(runner))
        times["sweep"].append(time.perf_counter() - t)
        t = time.perf_counter()
        sweep_depth(stack, focus, runner.lens, pred.depth_m, working_range_of(runner), ungated)
        times["ungated"].append(time.perf_counter() - t)
    net, sw = statistics.median(times["net"]), statistics.median(times["sweep"])
    ug = statistics.median(times["ungated"])
    print(f"threads {torch.get_num_threads()}, one stack 5 x 240 x 320, median of {args.repeats}")
    print(f"  {'network alone (baseline)':<28}{net * 1e3:>10.0f} ms")
    print(f"  {'sweep (added)':<28}{sw * 1e3:>10.0f} ms   ratio to the ungated sweep {sw / ug:.2f}x")
    print(f"  {'sweep without its gate':<28}{ug * 1e3:>10.0f} ms")
    print(f"  {'network + sweep':<28}{(net + sw) * 1e3:>10.0f} ms   ratio to network alone {(net + sw) / net:.2f}x")
    if args.onnx:
        _bench_onnx(runner, stack, focus, sweep_depth(stack, focus, runner.lens, pred.depth_m, working_range_of(runner)),
                    args.repeats, args.threads or None)
    return 0


def _bench_onnx(runner, stack, focus, swept_torch, repeats: int, threads: int | None) -> None:
    import tempfile

    import numpy as np

    from export.onnx_export import torch_to_onnx
    from export.runtime import OnnxRunner
    from model.defocus_sweep import SweepConfig

    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for name, sweep in (("net", None), ("net+sweep", SweepConfig())):
            path = torch_to_onnx(runner.model, Path(tmp) / f"{name}.onnx", graph="net", sweep=sweep)["any"]
            runners[name] = OnnxRunner(path, with_confidence=False, threads=threads)
        times: dict[str, list[float]] = {k: [] for k in runners}
        out = {k: r.predict(stack, focus) for k, r in runners.items()}  # warm-up
        for _ in range(max(1, repeats)):
            for k, r in runners.items():
                t = time.perf_counter()
                r.predict(stack, focus)
                times[k].append(time.perf_counter() - t)
    net, both = statistics.median(times["net"]), statistics.median(times["net+sweep"])
    diff = np.abs(out["net+sweep"].depth_m - swept_torch)
    print(f"onnxruntime (threads {threads or 'default'}), exported graphs, median of {repeats}")
    print(f"  {'network alone (baseline)':<28}{net * 1e3:>10.0f} ms")
    print(f"  {'network + sweep in graph':<28}{both * 1e3:>10.0f} ms   ratio to network alone {both / net:.2f}x")
    print(f"  in-graph vs PyTorch sweep: depth max |diff| {diff.max() * 1e3:.3f} mm, "
          f"{np.count_nonzero(diff > 1e-3)} of {diff.size} pixels beyond 1 mm (argmin near-ties)")


if __name__ == "__main__":
    raise SystemExit(main())
