"""Benchmark the device soak: how fast the pipeline runs stacks, against bare inference, in one run.

The speed claims that used to be wall-clock bounds in ``tests/device/test_soak.py`` ("300 stacks in
under 60 s") and ``tests/device/test_pipeline_recorder.py`` ("stop() ends the run within 5 s") live here
as ratios against a baseline measured in the same run, so a loaded machine changes both sides alike:

- **soak**: the test's configuration (tiny untrained DAIF-Net, simulated camera at 32x24, sliding window,
  every full sweep recorded, every 10th prediction saved) for ``--stacks`` stacks, against
  ``runner.predict`` alone on the same number of stacks of the same size (no camera, no threads, no
  disk). The ratio is the pipeline's overhead: capture, alignment, queues and recording.
- **stop latency**: from ``Pipeline.stop()`` to the last thread ending, against the median time of one
  bare inference (the longest a thread can be busy when the stop arrives).

Medians over ``--repeats`` runs. One torch thread by default (``--threads``), as the tests use.

  .venv/bin/python benchmarks/bench_soak.py                       # 300 stacks, 3 repeats
  .venv/bin/python benchmarks/bench_soak.py --stacks 100 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]


def _tiny_runner(tmp: Path):
    import torch

    from device.cameras.simulated import default_lens
    from model.checkpoint import save_checkpoint
    from model.network import DAIFNet, NetConfig
    from model.runners import TorchRunner

    torch.manual_seed(0)
    net = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12.0))
    path = save_checkpoint(tmp / "tiny.pt", net, default_lens(), FOCUS)
    return TorchRunner(path, device="cpu", with_confidence=True, max_psf_radius=8)


def _sim(size: tuple[int, int]):
    from device.cameras import open_camera

    def make():
        return open_camera("sim", size=size, realtime=False, moving_objects=1)

    return make


def time_soak(runner, root: Path, n: int, size: tuple[int, int]) -> float:
    """Seconds for ``n`` stacks through the soak test's pipeline (recording and saving as it does)."""
    from device.pipeline import Pipeline, PipelineConfig
    from device.recorder import PredictionWriter, StackRecorder
    from device.sweep import SweepConfig

    rec = StackRecorder(root / "rec", runner.lens.scaled_to(size))
    writer = PredictionWriter(root / "out", 0.5, 12.0)
    pipe = Pipeline(_sim(size), runner, sweep=SweepConfig(mode="sliding"),
                    config=PipelineConfig(drop=False, max_stacks=n, queue_size=2), recorder=rec)
    t0 = time.perf_counter()
    done = 0
    with pipe:
        for r in pipe.results():
            if done % 10 == 0:
                writer.save(r.depth_m, r.aif, r.confidence)
            done += 1
    dt = time.perf_counter() - t0
    writer.close()
    if done != n or pipe.error is not None:
        raise RuntimeError(f"soak ran {done} of {n} stacks (error: {pipe.error})")
    return dt


def time_bare(runner, n: int, size: tuple[int, int]) -> list[float]:
    """Seconds of ``n`` bare ``runner.predict`` calls on random stacks of ``size``, one per call."""
    import numpy as np

    rng = np.random.default_rng(0)
    w, h = size
    stack = rng.random((len(FOCUS), h, w, 3), dtype=np.float32)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        runner.predict(stack, FOCUS)
        out.append(time.perf_counter() - t0)
    return out


def time_stop(runner, size: tuple[int, int]) -> float:
    """Seconds from ``stop()`` (after the first result) until every pipeline thread has ended."""
    from device.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(_sim(size), runner, config=PipelineConfig(drop=True))
    pipe.start()
    first = threading.Event()

    def consume() -> None:
        for _ in pipe.results():
            first.set()

    c = threading.Thread(target=consume, daemon=True)
    c.start()
    first.wait(600)
    t0 = time.perf_counter()
    pipe.stop()
    c.join(600)
    pipe.join(600)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stacks", type=int, default=300, help="stacks per soak run (default 300, as the test)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement; medians are printed")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = p.parse_args(argv)
    if a.stacks < 1 or a.repeats < 1:
        p.error("--stacks and --repeats must be >= 1")
    import torch

    torch.set_num_threads(a.threads)
    size = (32, 24)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        runner = _tiny_runner(tmp)
        time_bare(runner, 5, size)  # warm-up
        soak, bare, stop, one = [], [], [], []
        for i in range(a.repeats):
            soak.append(time_soak(runner, tmp / f"soak{i}", a.stacks, size))
            b = time_bare(runner, a.stacks, size)
            bare.append(sum(b))
            one.append(statistics.median(b))
            stop.append(time_stop(runner, size))
    s, b, st, o = (statistics.median(x) for x in (soak, bare, stop, one))
    print(f"soak, {a.stacks} stacks at {size[0]}x{size[1]} (median of {a.repeats}): pipeline {s:.2f} s "
          f"({a.stacks / s:.1f} stacks/s), bare inference {b:.2f} s ({a.stacks / b:.1f} stacks/s): ratio {s / b:.2f}x")
    print(f"stop latency (median of {a.repeats}): {st * 1e3:.1f} ms = {st / o:.1f}x one bare inference ({o * 1e3:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
