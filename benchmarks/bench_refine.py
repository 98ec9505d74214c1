"""Cost of test-time refinement (model.refine) against the network alone, measured in the same run.

One 5-frame stack (a procedural scene rendered for the shipped lens at --size), the shipped model:
network + physics check (what ``model.predict`` does) against network + refinement + propagation
(``model.predict --refine``: two starts, the default), the same from the network's depth alone
(``--refine-far-start 0``), the default without the cost-agreement trust (``--refine-no-cost-trust``) and the fast
refinement (``--fast-refine``: the sweep and the fill, no gradient fits), against the gated sweep (``--sweep``).
Prints medians over --repeats runs and the ratios. ``--skip-full`` times the network, the sweep and the fast refinement
only (seconds instead of minutes).

usage: python benchmarks/bench_refine.py [--size 320x240] [--repeats 3] [--threads 2] [--device cpu|cuda] [--skip-full]
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
    p.add_argument("--size", default="320x240", help="WxH (default: the shipped lens's 320x240)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-full", action="store_true", help="leave out the full refinement's three settings")
    a = p.parse_args()

    import numpy as np
    import torch

    from model.checkpoint import default_checkpoint_path
    from model.lens import LensProfile
    from model.optics import working_range_m
    from model.defocus_sweep import SweepingRunner
    from model.refine import FAST_REFINE, RefineConfig, RefiningRunner
    from model.runners import TorchRunner
    from model.synth.layered import render_stack_layered
    from model.synth.scenes import default_scene_range_m, random_scene

    if a.threads:
        torch.set_num_threads(a.threads)
    w, h = (int(v) for v in a.size.lower().split("x"))
    lens = LensProfile.load(default_checkpoint_path().with_name("lens.json"))
    if lens.image_size is not None and tuple(lens.image_size) != (w, h):
        lens = lens.scaled_to((w, h))
    focus = [1.0, 1.5, 2.5, 4.0, 6.0]
    lo, hi = default_scene_range_m((focus[0], focus[-1]), working_range_m(focus, lens))
    aif, depth = random_scene(np.random.default_rng(0), h, w, lo, hi)
    stack = render_stack_layered(aif, depth, focus, lens, rng=np.random.default_rng(1)).astype(np.float32)

    base = TorchRunner(device=a.device)
    refined = RefiningRunner(base, device=a.device)
    single = RefiningRunner(base, RefineConfig(far_start=0.0), device=a.device)
    no_cost = RefiningRunner(base, RefineConfig(propagate_cost_agreement=False), device=a.device)
    swept = SweepingRunner(TorchRunner(device=a.device, with_confidence=False), device=a.device, with_confidence=True)
    fast = RefiningRunner(TorchRunner(device=a.device, with_confidence=False), FAST_REFINE, device=a.device)

    def timed(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    t_net = timed(lambda: base.predict(stack, focus))
    t_swp = timed(lambda: swept.predict(stack, focus))
    t_fast = timed(lambda: fast.predict(stack, focus))
    print(f"5x{h}x{w}, {a.device}, threads {torch.get_num_threads()}, median of {a.repeats}")
    print(f"network + physics check                 {t_net * 1e3:9.0f} ms")
    print(f"network + gated sweep (--sweep)         {t_swp * 1e3:9.0f} ms   ({t_swp / t_net:.1f}x the network)")
    print(f"network + fast refine (--fast-refine)   {t_fast * 1e3:9.0f} ms   ({t_fast / t_net:.1f}x the network, "
          f"{t_fast / t_swp:.1f}x the sweep)")
    if a.skip_full:
        return 0
    t_one = timed(lambda: single.predict(stack, focus))
    t_ref = timed(lambda: refined.predict(stack, focus))
    t_nc = timed(lambda: no_cost.predict(stack, focus))
    print(f"network + refine, one start             {t_one * 1e3:9.0f} ms   ({t_one / t_net:.1f}x the network)")
    print(f"network + refine, two starts (default)  {t_ref * 1e3:9.0f} ms   ({t_ref / t_net:.1f}x the network, "
          f"{t_ref / t_one:.2f}x one start)")
    print(f"  the same without cost-agreement trust  {t_nc * 1e3:9.0f} ms   (default / this: {t_ref / t_nc:.3f}x)")
    print(f"fast refine / one start of the full refinement: {t_fast / t_one:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
