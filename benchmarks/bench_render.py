"""Benchmark model.render.gauss_psf against the naive F.unfold baseline (forward + backward).

Usage:
    python benchmarks/bench_render.py [--device cpu|cuda] [--repeats 3] [--sizes 7,15,23,31]
                                      [--shape 5,3,256,256] [--threads 1] [--max-baseline-gib 4.5]

For every window size K (radius R = (K - 1) / 2) it times forward + backward (gradients w.r.t. image
and sigma, loss = weighted sum of the output) of ``gauss_psf`` and ``gauss_psf_unfold`` on one batch of
N images (default: the 5 slices of a 256 x 256 RGB stack, flattened to N = 5, blur uniform in
[0, (K - 1) / 6] px so the window fits the blur) and prints the medians over ``--repeats`` runs, the peak
memory of each and the ratios, all measured in the same run. It ends with the training-loop case:
``render_stack`` at B=4, S=5, 3 x 128 x 128, R=12.

Memory, honestly: every (implementation, K) case runs in a fresh Python subprocess, so that no
allocator cache or earlier peak leaks between cases. On CPU the figure is the rise of the process's
peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) over its value just before the first
forward pass, with inputs already allocated: everything forward and backward touched at their worst
moment, the saved activations included, as the operating system saw it (tracemalloc does not see
torch's allocations). On CUDA it is ``torch.cuda.max_memory_allocated()`` minus the memory allocated
before the first forward pass.

The baseline holds about 13 x N x K^2 x H x W float32 values (measured); a baseline case whose
estimate exceeds ``--max-baseline-gib`` is skipped and shown as such (at the default 5 x 256 x 256
that is K = 23 and K = 31, about 9 and 16 GiB). Run with ``--shape 5,3,128,128`` to see the baseline at
every K. Defaults use one thread so numbers are stable on a shared machine; the default run takes
about two minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_ROOT = Path(__file__).resolve().parents[1]
_BASELINE_FACTOR = 13.2  # peak bytes of gauss_psf_unfold per N*K^2*H*W*4 (measured with this script)


@dataclass(frozen=True)
class BenchConfig:
    """What to run."""

    device: str = "cpu"
    repeats: int = 3
    sizes: tuple[int, ...] = (7, 15, 23, 31)
    shape: tuple[int, int, int, int] = (5, 3, 256, 256)
    threads: int = 1
    max_baseline_gib: float = 4.5


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("empty list")
    return vals


def _sizes(text: str) -> tuple[int, ...]:
    vals = _int_list(text, "--sizes")
    for k in vals:
        if k < 1 or k % 2 == 0 or k > 129:
            raise argparse.ArgumentTypeError(f"window size {k} must be odd, in 1..129")
    return vals


def _shape(text: str) -> tuple[int, int, int, int]:
    vals = _int_list(text, "--shape")
    if len(vals) != 4 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected N,C,H,W positive, got {text!r}")
    return vals  # type: ignore[return-value]


def parse_args(argv: Optional[list[str]] = None) -> tuple[BenchConfig, Optional[list[str]]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case; the median is reported")
    p.add_argument("--sizes", type=_sizes, default=BenchConfig.sizes, help="window sizes K, comma-separated")
    p.add_argument("--shape", type=_shape, default=BenchConfig.shape, help="N,C,H,W of the batch")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--max-baseline-gib", type=float, default=4.5, help="skip baseline cases estimated above this")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "K"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.repeats < 1 or a.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    cfg = BenchConfig(a.device, a.repeats, a.sizes, a.shape, a.threads, a.max_baseline_gib)
    return cfg, a.worker


# ------------------------------------------------------------------------------------------ worker


def _worker(cfg: BenchConfig, impl: str, k: int) -> dict:
    """Runs in a fresh subprocess: times one case, measures its peak memory, returns a JSON-able dict."""
    import resource
    import time

    import torch

    sys.path.insert(0, str(_ROOT))
    from model.render import gauss_psf, gauss_psf_unfold, render_stack

    torch.set_num_threads(cfg.threads)
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch.cuda is not available here")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    radius = (k - 1) // 2
    if impl == "stack":  # the training-loop case
        x = torch.rand(4, 3, 128, 128, generator=g).to(dev).requires_grad_(True)
        s = (4.0 * torch.rand(4, 5, 128, 128, generator=g)).to(dev).requires_grad_(True)
        fn = render_stack
    else:
        n, c, h, w = cfg.shape
        x = torch.rand(n, c, h, w, generator=g).to(dev).requires_grad_(True)
        s = (max(radius, 1) / 3.0 * torch.rand(n, 1, h, w, generator=g)).to(dev).requires_grad_(True)
        fn = gauss_psf if impl == "ours" else gauss_psf_unfold
    fn(x[:1, :, :4, :4].detach(), s[:1, :, :4, :4].detach(), radius)  # first-call overheads, outside the timing
    out_shape = (x.shape[0], s.shape[1], *x.shape[1:]) if impl == "stack" else tuple(x.shape)
    weight = torch.randn(out_shape, generator=g).to(dev)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(cfg.repeats):
        x.grad = s.grad = None
        sync()
        t0 = time.perf_counter()
        (fn(x, s, radius) * weight).sum().backward()
        sync()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"median_s": statistics.median(times), "times_s": times, "peak_bytes": peak}


def _run_case(cfg: BenchConfig, impl: str, k: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--device", cfg.device, "--repeats", str(cfg.repeats),
           "--shape", ",".join(map(str, cfg.shape)), "--threads", str(cfg.threads), "--worker", impl, str(k)]
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": f"exit {res.returncode}: {tail[0]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ parent


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def main(argv: Optional[list[str]] = None) -> int:
    cfg, worker = parse_args(argv)
    if worker is not None:
        print(json.dumps(_worker(cfg, worker[0], int(worker[1]))))
        return 0
    n, c, h, w = cfg.shape
    print(f"gauss_psf vs gauss_psf_unfold, forward + backward, N,C,H,W = {n},{c},{h},{w}, device {cfg.device}, "
          f"{cfg.threads} thread(s), median of {cfg.repeats}; peak = extra peak memory of the case "
          f"({'ru_maxrss' if cfg.device == 'cpu' else 'cuda max_memory_allocated'})", flush=True)
    head = f"{'K':>3} {'R':>3} | {'ours s':>8} {'unfold s':>9} {'speed-up':>9} | {'ours MiB':>9} {'unfold MiB':>10} {'mem ratio':>9}"
    print(head)
    print("-" * len(head))
    for k in cfg.sizes:
        ours = _run_case(cfg, "ours", k)
        est = _BASELINE_FACTOR * n * k * k * h * w * 4
        if est > cfg.max_baseline_gib * 2**30:
            base = {"error": f"skipped: needs ~{est / 2**30:.1f} GiB > --max-baseline-gib {cfg.max_baseline_gib:g}"}
        else:
            base = _run_case(cfg, "unfold", k)
        row = f"{k:>3} {(k - 1) // 2:>3} | "
        if "error" in ours:
            print(row + f"ours failed: {ours['error']}", flush=True)
            continue
        if "error" in base:
            print(row + f"{ours['median_s']:>8.3f} {'-':>9} {'-':>9} | {_mib(ours['peak_bytes']):>9} {'-':>10} {'-':>9}"
                  f"   (unfold {base['error']})", flush=True)
            continue
        speed = base["median_s"] / ours["median_s"]
        mem = base["peak_bytes"] / max(ours["peak_bytes"], 1)
        print(row + f"{ours['median_s']:>8.3f} {base['median_s']:>9.3f} {speed:>8.1f}x | {_mib(ours['peak_bytes']):>9} "
              f"{_mib(base['peak_bytes']):>10} {mem:>8.1f}x", flush=True)
    st = _run_case(cfg, "stack", 25)
    if "error" in st:
        print(f"render_stack B=4 S=5 3x128x128 R=12: failed: {st['error']}")
    else:
        print(f"render_stack (training step) B=4, S=5, 3x128x128, R=12, forward + backward: median "
              f"{st['median_s']:.3f} s, peak {_mib(st['peak_bytes'])} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
