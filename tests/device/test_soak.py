"""Soak: hundreds of stacks through capture, inference and recording; memory must stay flat.

No wall-clock bound here: how fast the soak runs is measured by ``benchmarks/bench_soak.py`` (pipeline
against bare inference, same run).
"""

from __future__ import annotations

import os

import pytest

from sim_helpers import sim_factory
from device.pipeline import Pipeline, PipelineConfig
from device.recorder import PredictionWriter, StackRecorder
from device.sweep import SweepConfig
from model.formats import find_stacks


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _soak(runner, tmp_path, n: int, warmup: int) -> tuple[float, float, int]:
    rec = StackRecorder(tmp_path / "rec", runner.lens.scaled_to((32, 24)))
    writer = PredictionWriter(tmp_path / "out", 0.5, 12.0)
    pipe = Pipeline(sim_factory(size=(32, 24), moving_objects=1), runner, sweep=SweepConfig(mode="sliding"),
                    config=PipelineConfig(drop=False, max_stacks=n, queue_size=2), recorder=rec)
    base = peak = 0.0
    done = 0
    with pipe:
        for r in pipe.results():
            if done % 10 == 0:
                writer.save(r.depth_m, r.aif, r.confidence)
            done += 1
            if done == warmup:
                base = _rss_mb()
            elif done > warmup:
                peak = max(peak, _rss_mb())
            assert pipe._stacks.qsize() <= 2 and pipe._results.qsize() <= 2
    assert pipe.error is None and rec.error is None
    return base, peak, done


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to read memory use")
def test_soak_hundreds_of_stacks_memory_flat(tiny_runner, tmp_path):
    base, peak, done = _soak(tiny_runner, tmp_path, n=300, warmup=60)
    assert done == 300
    assert peak - base < 25.0, f"memory grew from {base:.0f} MB to {peak:.0f} MB"
    assert len(find_stacks(tmp_path / "rec")) == 300 // 5  # one recorded stack per full sweep


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to read memory use")
def test_soak_long(tiny_runner, tmp_path):
    base, peak, done = _soak(tiny_runner, tmp_path, n=5000, warmup=300)
    assert done == 5000 and peak - base < 25.0, f"memory grew from {base:.0f} MB to {peak:.0f} MB"
