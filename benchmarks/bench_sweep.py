"""Cost of the relative-blur sweep (model.defocus_sweep) against the network alone, one 5 x 240 x 320 stack.

Both are timed alternately in the same run (the shipped model, CPU), medians over --repeats; the ratio
(network + sweep) / network is what the option adds to each stack.

usage: python benchmarks/bench_sweep.py [--repeats 5] [--threads N]
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
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = p.parse_args()

    import numpy as np
    import torch

    from model.defocus_sweep import sweep_depth
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
    times: dict[str, list[float]] = {"net": [], "sweep": []}
    runner.predict(stack, focus)  # warm-up
    for _ in range(max(1, args.repeats)):
        t = time.perf_counter()
        pred = runner.predict(stack, focus)
        times["net"].append(time.perf_counter() - t)
        t = time.perf_counter()
        sweep_depth(stack, focus, runner.lens, pred.depth_m, working_range_of(runner))
        times["sweep"].append(time.perf_counter() - t)
    net, sw = statistics.median(times["net"]), statistics.median(times["sweep"])
    print(f"threads {torch.get_num_threads()}, one stack 5 x 240 x 320, median of {args.repeats}")
    print(f"  {'network alone (baseline)':<28}{net * 1e3:>10.0f} ms")
    print(f"  {'sweep (added)':<28}{sw * 1e3:>10.0f} ms")
    print(f"  {'network + sweep':<28}{(net + sw) * 1e3:>10.0f} ms   ratio to network alone {(net + sw) / net:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
