"""Benchmark how long the command-line tools take to show ``--help``, against the interpreter's own start.

The speed claims that used to be wall-clock bounds in the tests ("``device.capture --help`` in under
10 s", "the calibration help in under 0.5 s / 10 s") live here; the tests keep what makes help fast
(no torch, numpy, scipy, cv2 or matplotlib import) and assert that.

Each command runs in a fresh interpreter, ``--repeats`` times; printed are the medians and the ratio to
the baseline ``python -c pass`` measured in the same run (and, for scale, ``python -c "import torch"``).
Also timed: ``model.synth.scenes.random_scene`` at 128x128 (the old ``test_scenes.test_fast``), against
rendering one 5-frame training stack from it (``model.render.render_stack``), the work it feeds.

  .venv/bin/python benchmarks/bench_startup.py
  .venv/bin/python benchmarks/bench_startup.py --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMANDS = [
    ("python -c pass (baseline)", ["-c", "pass"]),
    ("python -c 'import torch'", ["-c", "import torch"]),
    ("device.capture --help", ["-m", "device.capture", "--help"]),
    ("calibration --help", ["-m", "calibration", "--help"]),
    ("calibration.wizard --help", ["-m", "calibration.wizard", "--help"]),
    ("model.predict --help", ["-m", "model.predict", "--help"]),
    ("model.train --help", ["-m", "model.train", "--help"]),
]


def _time_cmd(args: list[str], repeats: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True)
        ts.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return statistics.median(ts)


def _time_scenes(repeats: int) -> tuple[float, float]:
    import numpy as np
    import torch

    from model.render import render_stack
    from model.synth.scenes import random_scene

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    random_scene(rng, 128, 128, 0.7, 10.0)
    scene_t, render_t = [], []
    for _ in range(max(5, repeats)):
        t0 = time.perf_counter()
        for _ in range(20):
            aif, depth = random_scene(rng, 128, 128, 0.7, 10.0)
        scene_t.append((time.perf_counter() - t0) / 20)
        img = torch.from_numpy(np.ascontiguousarray(aif)).permute(2, 0, 1)[None].float()
        sigma = torch.rand(1, 5, 128, 128) * 3.0
        t0 = time.perf_counter()
        render_stack(img, sigma, radius=10)
        render_t.append(time.perf_counter() - t0)
    return statistics.median(scene_t), statistics.median(render_t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="runs per command; medians are printed (default 5)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error("--repeats must be >= 1")
    base = None
    for name, args in COMMANDS:
        t = _time_cmd(args, a.repeats)
        base = base or t
        print(f"{name:28s} {t:7.3f} s  {t / base:6.1f}x the bare interpreter")
    s, r = _time_scenes(a.repeats)
    print(f"random_scene 128x128: {s * 1e3:.1f} ms; one 5-frame render_stack of it {r * 1e3:.1f} ms: "
          f"the scene is {s / r:.2f}x the render it feeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
