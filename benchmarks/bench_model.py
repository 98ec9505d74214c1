"""Training-step and inference latency of DAIF-Net, with ratios against a baseline measured in the same run.

Training step (forward, re-render, losses, backward) at B x 5 x H x W with this package's gather-form PSF
renderer against the same step with the naive ``F.unfold`` renderer (K^2 copies of the image). Inference
latency for one 5-frame stack (network only, and network + physics check), and the lens-aware network (blur
coding, the shipped model's) against the lens-specific one it was converted from (inverse-depth coding, same
weights), timed alternately in the same run. Medians over --repeats runs.

usage: python benchmarks/bench_model.py [--size 128] [--batch 4] [--repeats 5] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_time(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _unfold_bytes(n: int, c: int, h: int, w: int, radius: int) -> float:
    """Rough peak memory of the unfold renderer with autograd (about 13 float32 copies of the windows)."""
    return 13.0 * n * c * (2 * radius + 1) ** 2 * h * w * 4 / 3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="training crop size (pixels; the default recipe uses 64)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--radius", type=int, default=12, help="PSF window radius for the training step")
    p.add_argument("--max-baseline-gib", type=float, default=4.0, help="skip unfold cases estimated above this memory")
    args = p.parse_args()

    import torch

    from model import render
    from model.confidence import confidence_from_residual
    from model.lens import LensProfile
    from model.losses import LossWeights
    from model.network import DAIFNet, NetConfig, lens_aware_config
    from model.optics import defocus_sigma_map
    from model.trainer import Trainer, default_lens_path

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    lens = LensProfile.load(default_lens_path())
    net = DAIFNet(NetConfig(near_m=0.5, far_m=12.0)).to(dev)
    focus = torch.tensor([[1.0, 1.5, 2.5, 4.0, 6.0]], device=dev)
    b, s = args.batch, 5
    x = torch.rand(b, s, 3, args.size, args.size, device=dev)
    f = focus.expand(b, s)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step(renderer):
        out = net(x, f)
        sigma = defocus_sigma_map(out.depth_m, f, lens)
        aif = out.aif
        if renderer == "ours":
            rendered = render.render_stack(aif, sigma, radius=args.radius)
        else:
            rendered = render.gauss_psf_unfold(
                aif.unsqueeze(1).expand(b, s, 3, args.size, args.size).reshape(b * s, 3, args.size, args.size),
                sigma.reshape(b * s, 1, args.size, args.size), args.radius).reshape(b, s, 3, args.size, args.size)
        loss = (rendered - x).abs().mean() * LossWeights().recon
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    print(f"device {dev}, threads {torch.get_num_threads()}, DAIF-Net {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params")
    print(f"\ntraining step, {b} x {s} x {args.size} x {args.size}, PSF radius {args.radius} (median of {args.repeats})")
    need_gib = _unfold_bytes(b * s, 3, args.size, args.size, args.radius) / 2**30
    t_ours = _median_time(lambda: step("ours"), args.repeats, sync)
    t_unf = None if need_gib > args.max_baseline_gib else _median_time(lambda: step("unfold"), args.repeats, sync)
    print(f"  {'renderer':<22}{'s/step':>10}{'stacks/hour':>14}{'ratio':>8}")
    if t_unf is None:
        print(f"  {'unfold (baseline)':<22}  skipped: needs about {need_gib:.1f} GiB > --max-baseline-gib {args.max_baseline_gib}")
    else:
        print(f"  {'unfold (baseline)':<22}{t_unf:>10.3f}{3600 * b / t_unf:>14.0f}{1.0:>8.2f}")
    ratio = f"{'-':>8}" if t_unf is None else f"{t_unf / t_ours:>8.2f}x"
    print(f"  {'gather (ours)':<22}{t_ours:>10.3f}{3600 * b / t_ours:>14.0f}{ratio}")

    net.eval()
    h, w = 240, 320
    xs = torch.rand(1, s, 3, h, w, device=dev)

    def infer(check: str | None):
        with torch.inference_mode():
            out = net(xs, focus)
            if check is None:
                return
            sigma = defocus_sigma_map(out.depth_m, focus, lens)
            radius = render.capped_window_radius(float(sigma.max()))
            if check == "ours":
                rendered = render.render_stack(out.aif, sigma, radius=radius)
            else:
                rendered = render.gauss_psf_unfold(out.aif.expand(s, 3, h, w), sigma.reshape(s, 1, h, w), radius).reshape(1, s, 3, h, w)
            confidence_from_residual(xs, rendered)

    print(f"\ninference, one stack 5 x {h} x {w} (median of {args.repeats})")
    t_net = _median_time(lambda: infer(None), args.repeats, sync)
    t_chk = _median_time(lambda: infer("ours"), args.repeats, sync)
    print(f"  {'network only':<36}{t_net * 1e3:>10.1f} ms")
    aware = DAIFNet(lens_aware_config(net.config, lens)).to(dev).eval()
    aware.load_state_dict(net.state_dict())
    aware.set_lens(lens)
    times: dict[str, list[float]] = {"specific": [], "aware": []}
    for _ in range(max(3, args.repeats)):  # alternate, so load on the machine hits both alike
        for name, m in (("specific", net), ("aware", aware)):
            with torch.inference_mode():
                m(xs, focus)  # warm
                sync()
                t = time.perf_counter()
                m(xs, focus)
                sync()
            times[name].append(time.perf_counter() - t)
    t_spec, t_aware = statistics.median(times["specific"]), statistics.median(times["aware"])
    print(f"  {'lens-specific network (baseline)':<36}{t_spec * 1e3:>10.1f} ms")
    print(f"  {'lens-aware network (shipped coding)':<36}{t_aware * 1e3:>10.1f} ms   ratio aware/specific {t_aware / t_spec:.2f}x (target <= 1.3x)")
    print(f"  {'network + physics check (ours)':<36}{t_chk * 1e3:>10.1f} ms")
    with torch.inference_mode():
        out = net(xs, focus)
        radius = render.capped_window_radius(float(defocus_sigma_map(out.depth_m, focus, lens).max()))
    need_gib = _unfold_bytes(s, 3, h, w, radius) / 2**30
    if need_gib > args.max_baseline_gib:
        print(f"  network + physics check (unfold): skipped, radius {radius} needs about {need_gib:.0f} GiB")
    else:
        t_chk_unf = _median_time(lambda: infer("unfold"), max(1, args.repeats // 2), sync)
        print(f"  {'network + physics check (unfold)':<36}{t_chk_unf * 1e3:>10.1f} ms   ratio unfold/ours {t_chk_unf / t_chk:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
