"""Training-data throughput: synthetic stacks per second from the CPU path and from the device-side generator.

The same ``model.data.SynthConfig`` (shipped lens, focus 1-6 m jittered 3 %, 5 frames, noise 0.01, PSF radius
cap 16, as ``model/configs/gpu.yaml``; ``--lens-aware``: a lens, focus set and scene drawn per batch as
``model/configs/lens_aware.yaml``) is made by

- the CPU path: ``model.data.SyntheticStacks.make`` in this process (NumPy scenes, torch rendering) - what ONE
  DataLoader worker delivers (the last GPU run had 14 of them: 37 stacks/s in all);
- ``model.synth.gpu_batches.DeviceBatches.make`` on the CPU;
- ``DeviceBatches.make`` on CUDA when a GPU is present (synchronised), with one PSF window per batch (its
  default there) and per frame; ``--cuda-kernel`` also with ``export.psf_ext.gauss_psf_cuda`` (built by nvcc).

The CPU cases are timed alternately in the same run; medians over --repeats batches after one warm-up batch.
Ratios are against the CPU path measured in this run.

usage: python benchmarks/bench_train_data.py [--size 128] [--batch 16] [--repeats 5] [--threads N] [--lens-aware]
       [--cuda-kernel] [--no-cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _config(size: int, batch: int, lens_aware: bool) -> Any:
    from model.data import SynthConfig
    from model.lens import LensProfile
    from model.lens_sampling import LensSampling
    from model.synth.noise import SensorNoise
    from model.trainer import default_lens_path

    lens = LensProfile.load(default_lens_path())
    common = dict(crop_hw=(size, size), batch_size=batch, seed=0, noise=SensorNoise.from_level(0.01), max_psf_radius=16)
    if not lens_aware:
        return SynthConfig(lens, focus_m=(1.0, 1.5, 2.5, 4.0, 6.0), focus_jitter=0.03, **common)
    sampling = LensSampling(k_range=(1.0, 10.0), stack_size=(3, 7), far_focus_px=(0.8, 2.0), focus_span_px=(3.0, 7.0),
                            far_scene_prob=0.2, near_scene_prob=0.1)
    return SynthConfig(lens, lens_sampling=sampling, weak_texture_prob=0.2, vignetting=0.15, **common)


def _time(make: Callable[[int], Any], index: int, sync: Callable[[], None]) -> float:
    t = time.perf_counter()
    make(index)
    sync()
    return time.perf_counter() - t


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128, help="crop height and width (px)")
    p.add_argument("--batch", type=int, default=16, help="stacks per batch")
    p.add_argument("--repeats", type=int, default=5, help="timed batches per case (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--lens-aware", action="store_true", help="a lens, focus set and scene drawn per batch")
    p.add_argument("--cuda-kernel", action="store_true", help="on CUDA, also render with export.psf_ext.gauss_psf_cuda")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA cases even when a GPU is present")
    args = p.parse_args()
    if args.size < 16 or args.batch < 1 or args.repeats < 1:
        p.error("--size must be >= 16, --batch and --repeats >= 1")

    import torch

    from model.data import SyntheticStacks
    from model.synth.gpu_batches import DeviceBatches

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _config(args.size, args.batch, args.lens_aware)
    cases: dict[str, tuple[Callable[[int], Any], Callable[[], None]]] = {
        "CPU path (SyntheticStacks, 1 process)": (SyntheticStacks(cfg).make, lambda: None),
        "DeviceBatches on CPU": (DeviceBatches(cfg, "cpu").make, lambda: None),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for name, (make, sync) in cases.items():
        make(10_000)  # warm-up (photo bank, lazy imports)
    for i in range(args.repeats):  # alternate, so that load on a shared machine hits both alike
        for name, (make, sync) in cases.items():
            times[name].append(_time(make, i, sync))

    cuda_note = ""
    if torch.cuda.is_available() and not args.no_cuda:
        dev = torch.device("cuda")
        gpu: dict[str, DeviceBatches] = {
            f"DeviceBatches on {torch.cuda.get_device_name(0)}": DeviceBatches(cfg, dev),
            "  same, PSF window per frame": DeviceBatches(cfg, dev, per_frame_radius=True),
        }
        if args.cuda_kernel:
            try:
                from export.psf_ext import gauss_psf_cuda, load_torch_extension

                load_torch_extension()
                gpu["  same, CUDA kernel (export.psf_ext)"] = DeviceBatches(cfg, dev, psf=gauss_psf_cuda)
            except Exception as e:  # noqa: BLE001 - a benchmark reports what it could not time
                print(f"CUDA kernel unavailable ({type(e).__name__}: {e}); not timed")
        for name, gen in gpu.items():
            gen.make(10_000)
            torch.cuda.synchronize()
            times[name] = [_time(gen.make, i, torch.cuda.synchronize) for i in range(args.repeats)]
    else:
        cuda_note = " (no CUDA GPU here: the GPU rate is not measured)" if not args.no_cuda else ""

    base = statistics.median(times["CPU path (SyntheticStacks, 1 process)"])
    kind = "lens-aware" if args.lens_aware else "fixed lens"
    print(f"threads {torch.get_num_threads()}, batch {args.batch} x {args.size}x{args.size}, {kind}, "
          f"median of {args.repeats}{cuda_note}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:<44}{t * 1e3:>9.0f} ms/batch {args.batch / t:>9.1f} stacks/s   ratio to CPU path {base / t:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
