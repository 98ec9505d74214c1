"""Benchmark the GaussPSF CUDA kernel against the PyTorch renderer (model.render.gauss_psf).

On a CUDA GPU: for each radius, the median time of the forward and of forward+backward of
export.psf_ext.gauss_psf_cuda (fp32, and fp16 forward) and of model.render.gauss_psf on a
STACK x 3 x SIZE x SIZE batch with sigma uniform in [0, radius / 3] px, the ratios, and the largest
output difference between the two.

Without a GPU: says so, then times the CPU library (libgausspsf_host, the kernel's own math,
single-threaded) against model.render.gauss_psf on the CPU at --cpu-size as a sanity figure,
and exits 0.

usage: python benchmarks/bench_psf_cuda.py [--size 256] [--stack 5] [--radii 3 5 ... 15]
       [--repeats 20] [--cpu-size 64] [--host-lib PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="image height and width on the GPU (px)")
    parser.add_argument("--stack", type=int, default=5, help="images per batch (N)")
    parser.add_argument("--radii", type=int, nargs="+", default=[3, 5, 7, 9, 11, 13, 15], help="window radii (px)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (median reported)")
    parser.add_argument("--cpu-size", type=int, default=64, help="image size for the CPU fallback (px)")
    parser.add_argument("--host-lib", type=Path, default=None, help="libgausspsf_host.so to use (default: build)")
    args = parser.parse_args(argv)
    if args.size < 1 or args.cpu_size < 1 or args.stack < 1 or args.repeats < 1:
        parser.error("--size, --cpu-size, --stack and --repeats must be >= 1")
    bad = [r for r in args.radii if not 0 <= r <= 64]
    if bad:
        parser.error(f"radius must be in [0, 64], got {bad}")
    return args


def median_ms(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up (and lazy builds)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def make_inputs(torch: Any, n: int, size: int, radius: int, device: str) -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(radius)
    image = torch.rand((n, 3, size, size), generator=gen)
    sigma = torch.rand((n, 1, size, size), generator=gen) * (radius / 3.0)
    return image.to(device), sigma.to(device)


def renderer() -> Any:
    try:
        from model.render import gauss_psf
    except ImportError:
        return None
    return gauss_psf


def bench_gpu(args: argparse.Namespace) -> None:
    import torch

    from export import psf_ext

    render = renderer()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  CUDA {torch.version.cuda}")
    print(f"batch {args.stack}x3x{args.size}x{args.size}, sigma ~ U[0, R/3] px, median of {args.repeats} runs (ms)")
    if render is None:
        print("model.render.gauss_psf not importable: timing the CUDA kernel alone")
    header = f"{'R':>3} {'cuda fwd':>9} {'fp16 fwd':>9} {'torch fwd':>10} {'ratio':>7} {'cuda f+b':>9} {'torch f+b':>10} " \
             f"{'ratio':>7} {'max|diff|':>10}"
    print(header)
    sync = torch.cuda.synchronize
    for radius in args.radii:
        image, sigma = make_inputs(torch, args.stack, args.size, radius, "cuda")
        grad = torch.randn_like(image)
        with torch.no_grad():
            cuda_fwd = median_ms(lambda: psf_ext.gauss_psf_cuda(image, sigma, radius), args.repeats, sync)
            half, half_sigma = image.half(), sigma.half()
            half_fwd = median_ms(lambda: psf_ext.gauss_psf_cuda(half, half_sigma, radius), args.repeats, sync)
        img_g, sig_g = image.clone().requires_grad_(), sigma.clone().requires_grad_()
        cuda_fb = median_ms(lambda: psf_ext.gauss_psf_cuda(img_g, sig_g, radius).backward(grad), args.repeats, sync)
        row = f"{radius:>3} {cuda_fwd:>9.3f} {half_fwd:>9.3f}"
        if render is not None:
            with torch.no_grad():
                torch_fwd = median_ms(lambda: render(image, sigma, radius), args.repeats, sync)
                diff = (render(image, sigma, radius) - psf_ext.gauss_psf_cuda(image, sigma, radius)).abs().max()
            torch_fb = median_ms(lambda: render(img_g, sig_g, radius).backward(grad), args.repeats, sync)
            row += f" {torch_fwd:>10.3f} {torch_fwd / cuda_fwd:>6.1f}x {cuda_fb:>9.3f} {torch_fb:>10.3f} " \
                   f"{torch_fb / cuda_fb:>6.1f}x {float(diff):>10.2e}"
        else:
            row += f" {'-':>10} {'-':>7} {cuda_fb:>9.3f} {'-':>10} {'-':>7} {'-':>10}"
        print(row, flush=True)


def bench_cpu(args: argparse.Namespace) -> None:
    import torch

    from export import psf_ext

    lib = psf_ext.load_host_library(args.host_lib)
    render = renderer()
    size = args.cpu_size
    print(f"CPU sanity figure: host library (kernel math, 1 thread) vs torch CPU renderer, "
          f"batch {args.stack}x3x{size}x{size}, median of {args.repeats} runs (ms), torch threads "
          f"{torch.get_num_threads()}")
    if render is None:
        print("model.render.gauss_psf not importable: timing the host library alone")
    print(f"{'R':>3} {'host fwd':>9} {'torch fwd':>10} {'torch/host':>11} {'max|diff|':>10}")
    for radius in args.radii:
        image, sigma = make_inputs(torch, args.stack, size, radius, "cpu")
        img_np, sig_np = image.numpy(), sigma.numpy()
        host_fwd = median_ms(lambda: psf_ext.host_gauss_psf(img_np, sig_np, radius, lib=lib), args.repeats,
                             lambda: None)
        if render is None:
            print(f"{radius:>3} {host_fwd:>9.2f} {'-':>10} {'-':>11} {'-':>10}", flush=True)
            continue
        with torch.no_grad():
            torch_fwd = median_ms(lambda: render(image, sigma, radius), args.repeats, lambda: None)
            diff = abs(render(image, sigma, radius).numpy() - psf_ext.host_gauss_psf(img_np, sig_np, radius, lib=lib))
        print(f"{radius:>3} {host_fwd:>9.2f} {torch_fwd:>10.2f} {torch_fwd / host_fwd:>10.2f}x {diff.max():>10.2e}",
              flush=True)


def main() -> int:
    args = parse_args()
    import torch

    if torch.cuda.is_available():
        bench_gpu(args)
    else:
        print("no CUDA GPU available to PyTorch: the CUDA kernel cannot be timed here "
              "(run this script on a GPU machine or a Jetson for the kernel figures).")
        bench_cpu(args)
    return 0


if __name__ == "__main__":
    from model.cli import run_cli

    run_cli(main)
