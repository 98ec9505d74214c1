"""Benchmark the on-board pipeline: stacks per second and latency for each runtime available.

Runs the full device pipeline (simulated camera -> sweep -> breathing alignment -> inference, threads
and bounded queues as in ``python -m device.capture``) for every runtime that can be loaded here:

  torch         the checkpoint (``--model``, default: the shipped model)
  onnxruntime   ``--onnx FILE`` (made by the export package)
  tensorrt      ``--engine FILE`` (built on the target, e.g. a Jetson)

Inference always works on the freshest stack (older ones are dropped, as in the live view), so the
end-to-end latency is what a user sees. The simulated camera runs on a virtual clock by default, so
the numbers are what the compute allows
(pass ``--realtime`` to pace frames at ``--fps`` as a real sensor would).

  python benchmarks/bench_device.py --stacks 20
  python benchmarks/bench_device.py --model mine.pt --onnx mine.onnx --engine mine.engine --size 320x240
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="checkpoint for the torch runtime (default: shipped model)")
    p.add_argument("--onnx", type=Path, help="ONNX model for onnxruntime")
    p.add_argument("--engine", type=Path, help="TensorRT engine")
    p.add_argument("--stacks", type=int, default=10, help="stacks to time per runtime (after 2 warm-up stacks)")
    p.add_argument("--size", type=_size, default=None, help="capture size WxH (default: the model's image size)")
    p.add_argument("--sliding", action="store_true", help="sliding-window mode (a stack per frame)")
    p.add_argument("--realtime", action="store_true", help="pace the simulated sensor in real time")
    p.add_argument("--fps", type=float, default=60.0, help="simulated frame rate")
    p.add_argument("--no-confidence", action="store_true", help="skip the physics-check confidence")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    if a.stacks < 1:
        p.error("--stacks must be >= 1")

    from device.cameras import open_camera
    from device.pipeline import Pipeline, PipelineConfig
    from device.sweep import SweepConfig
    from model.runners import create_runner

    candidates = [("torch", a.model), ("onnxruntime", a.onnx), ("tensorrt", a.engine)]
    rows = []
    for runtime, model in candidates:
        if runtime != "torch" and model is None:
            print(f"{runtime:12s} skipped: no {'--onnx' if runtime == 'onnxruntime' else '--engine'} file given")
            continue
        try:
            runner = create_runner(runtime, model, with_confidence=not a.no_confidence)
        except Exception as e:  # noqa: BLE001 - report and go on with the next runtime
            print(f"{runtime:12s} unavailable: {type(e).__name__}: {e}")
            continue
        size = a.size or tuple(runner.lens.image_size or (320, 240))

        def factory(runner=runner, size=size):
            return open_camera("sim", lens=runner.lens, size=size, realtime=a.realtime, fps=a.fps)

        pipe = Pipeline(factory, runner, sweep=SweepConfig(mode="sliding" if a.sliding else "stack"),
                        config=PipelineConfig(drop=True, max_stacks=a.stacks + 2))
        done = 0
        with pipe:
            for r in pipe.results():
                done += 1
                if done == 2:  # warm-up over: restart the statistics
                    from device.pipeline import PipelineStats

                    pipe.stats = PipelineStats()
        if pipe.error is not None:
            print(f"{runtime:12s} failed: {pipe.error}")
            continue
        s = pipe.stats.snapshot()
        row = {
            "runtime": runtime,
            "size": list(size),
            "stacks": s["stacks_inferred"],
            "stacks_per_s": s["stacks_inferred"] / s["elapsed_s"] if s["elapsed_s"] > 0 else 0.0,
            "capture_fps": s["frames_per_s_total"],
            "infer_ms_mean": s["infer_ms"]["mean"],
            "infer_ms_p95": s["infer_ms"]["p95"],
            "e2e_ms_mean": s["e2e_ms"]["mean"],
            "e2e_ms_p95": s["e2e_ms"]["p95"],
        }
        rows.append(row)
        print(f"{runtime:12s} {size[0]}x{size[1]}  {row['stacks_per_s']:.2f} stacks/s  capture {row['capture_fps']:.1f} frames/s  "
              f"inference {row['infer_ms_mean']:.0f} ms mean / {row['infer_ms_p95']:.0f} ms p95  "
              f"end-to-end {row['e2e_ms_mean']:.0f} ms mean / {row['e2e_ms_p95']:.0f} ms p95")
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
