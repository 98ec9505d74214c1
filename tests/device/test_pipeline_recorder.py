"""End to end with the simulated camera: capture -> inference -> recording, concurrency, failures."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest

from sim_helpers import FOCUS, sim_factory
from device.cameras import CameraError
from device.pipeline import Pipeline, PipelineConfig, PipelineStats
from device.recorder import PredictionWriter, StackRecorder, next_stack_number
from device.sweep import SweepConfig
from model.formats import find_stacks, read_stack


def _run(pipe: Pipeline, limit: int | None = None) -> list:
    out = []
    with pipe:
        for r in pipe.results():
            out.append(r)
            if limit is not None and len(out) >= limit:
                break
    return out


def test_a_stack_is_captured_inferred_and_recorded_and_reads_back(tiny_runner, tmp_path):
    rec = StackRecorder(tmp_path / "rec", tiny_runner.lens.scaled_to((40, 30)))
    pipe = Pipeline(sim_factory(), tiny_runner, config=PipelineConfig(drop=False, max_stacks=3), recorder=rec)
    results = _run(pipe)
    assert pipe.error is None
    assert [r.number for r in results] == [0, 1, 2]
    r = results[0]
    assert r.depth_m.shape == (30, 40) and r.aif.shape == (30, 40, 3) and r.confidence.shape == (30, 40)
    assert np.all((r.depth_m >= 0.5 - 1e-4) & (r.depth_m <= 12.0 + 1e-3))
    assert r.infer_ms > 0 and r.e2e_ms >= r.infer_ms * 0.5
    folders = find_stacks(tmp_path / "rec")
    assert [f.name for f in folders] == ["stack_000000", "stack_000001", "stack_000002"]
    st = read_stack(folders[1])
    assert np.allclose(st.focus_m, FOCUS) and st.images.shape == (5, 30, 40, 3)
    assert st.lens.pixel_pitch_m == pytest.approx(1.2e-5 * 8)
    cap = st.capture
    assert cap["direction"] == "far-to-near" and cap["camera"]["camera"] == "sim"
    assert len(cap["frames"]) == 5 and all("timestamp_ns" in f and "focus_control" in f for f in cap["frames"])
    assert cap["exposure_locked"]["exposure_time_us"] > 0
    np.testing.assert_allclose(st.images, results[1].stack.images, atol=1 / 255)  # what was inferred is what is stored
    snap = pipe.stats.snapshot()
    assert snap["stacks_inferred"] == 3 and snap["frames"] == 15 and snap["infer_ms"]["mean"] > 0


def test_prediction_writer_follows_the_predictions_format(tmp_path, rng):
    w = PredictionWriter(tmp_path / "out", 0.5, 12.0)
    depth = rng.uniform(1, 5, (30, 40)).astype(np.float32)
    folder = w.save(depth, rng.random((30, 40, 3), dtype=np.float32), rng.random((30, 40), dtype=np.float32))
    assert sorted(p.name for p in folder.iterdir()) == ["aif.png", "confidence.npy", "depth.npy", "depth.png", "prediction.json"]
    d = np.load(folder / "depth.npy")
    assert d.dtype == np.float32 and np.array_equal(d, depth)
    assert next_stack_number(tmp_path / "out") == 1
    w.close()


def test_prediction_writer_flags_a_stack_without_depth_evidence(tmp_path, rng):
    import json

    w = PredictionWriter(tmp_path / "out", 0.5, 12.0, depth_png=False)
    depth = rng.uniform(1, 5, (30, 40)).astype(np.float32)
    same = np.repeat(rng.random((1, 30, 40, 3), dtype=np.float32), 5, axis=0)  # the focus never changed the image
    folder = w.save(depth, same[0], np.ones((30, 40), np.float32), images=same, focus_m=np.array(FOCUS))
    assert not np.any(np.load(folder / "confidence.npy"))
    meta = json.loads((folder / "prediction.json").read_text())
    assert meta["depth_evidence"]["has_evidence"] is False and "identical" in meta["warnings"][0]
    good = w.save(depth, same[0], np.ones((30, 40), np.float32), images=rng.random((5, 30, 40, 3)), focus_m=np.array(FOCUS))
    assert np.load(good / "confidence.npy").min() == 1.0 and not w.warned[1:]
    w.close()


def test_recorder_cleans_up_after_a_killed_run_and_keeps_a_second_recorder_out(tiny_runner, tmp_path):
    root = tmp_path / "rec"
    (root / ".stack_000003.ab12cd34.tmp").mkdir(parents=True)  # a stack being written when the run was killed
    (root / ".stack_000003.ab12cd34.tmp" / "frame_00.png").write_bytes(b"partial")
    rec = StackRecorder(root, tiny_runner.lens.scaled_to((40, 30)))
    try:
        assert not (root / ".stack_000003.ab12cd34.tmp").exists()
        with pytest.raises(ValueError, match="another recording is writing here"):
            StackRecorder(root, tiny_runner.lens.scaled_to((40, 30)))
    finally:
        rec.close()
    StackRecorder(root, tiny_runner.lens.scaled_to((40, 30))).close()  # free again once closed


def test_prediction_writer_never_replaces_a_recorded_stack(tmp_path):
    from model.formats import FocalStack, write_stack
    from model.lens import LensProfile

    rng = np.random.default_rng(0)
    root = tmp_path / "mixed"
    write_stack(root / "stack_000000", FocalStack(images=rng.random((2, 30, 40, 3), dtype=np.float32),
                                                  focus_m=np.array([1.0, 2.0]), lens=LensProfile(0.05, 8.0, 1.2e-5)))
    w = PredictionWriter(root, 0.5, 12.0, depth_png=False)
    before = (root / "stack_000000" / "stack.json").read_bytes()
    assert w.save(np.ones((30, 40), np.float32), np.zeros((30, 40, 3), np.float32), None, number=0) is None
    assert "never replace recordings" in w.error
    assert (root / "stack_000000" / "stack.json").read_bytes() == before
    w.close()


def test_drop_mode_keeps_queues_bounded_and_counts_drops(tiny_runner):
    """A model slower than the camera: older stacks are dropped, queues stay bounded.

    "Slower" is made by an event, not a sleep: each prediction waits until the camera has captured three
    more stacks (so at least one is dropped with queues of one), whatever the machine's speed."""
    import time

    holder: dict = {}

    class Slow:
        name, lens, focus_m = "slow", tiny_runner.lens, tiny_runner.focus_m

        def predict(self, images, focus_m):
            pipe = holder["pipe"]
            start = pipe.stats.snapshot()["stacks_captured"]
            deadline = time.monotonic() + 300  # only a real hang (no capture at all) gets this far
            while (pipe.stats.snapshot()["stacks_captured"] < start + 3 and not pipe.stop_event.is_set()
                   and time.monotonic() < deadline):
                pipe.stop_event.wait(0.005)
            return tiny_runner.predict(images, focus_m)

    pipe = Pipeline(sim_factory(), Slow(), sweep=SweepConfig(mode="sliding"), config=PipelineConfig(drop=True, queue_size=1))
    holder["pipe"] = pipe
    with pipe:
        got = 0
        for _ in pipe.results():
            assert pipe._stacks.qsize() <= 1 and pipe._results.qsize() <= 1
            got += 1
            if got == 4:
                break
    assert got == 4
    assert pipe.stats.snapshot()["dropped"] > 0  # the camera outran the model


def test_camera_errors_are_retried_with_backoff(tiny_runner, caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise CameraError("USB camera unplugged")
        return sim_factory(fail_after=7)()  # dies in the middle of its second sweep

    pipe = Pipeline(flaky, tiny_runner, config=PipelineConfig(drop=False, max_stacks=3, retry_initial_s=0.01, retry_max_s=0.02))
    with caplog.at_level("WARNING", logger="device.pipeline"):
        results = _run(pipe)
    assert len(results) == 3 and pipe.error is None
    assert len(calls) >= 3
    msgs = [r.getMessage() for r in caplog.records]
    assert any("reopening in 0.0 s (attempt 1)" in m and "fail_after" in m for m in msgs)
    assert any("USB camera unplugged; reopening in 0.0 s (attempt 2)" in m for m in msgs)


def test_giving_up_after_max_retries(tiny_runner):
    def dead():
        raise CameraError("no camera")

    pipe = Pipeline(dead, tiny_runner, config=PipelineConfig(max_retries=2, retry_initial_s=0.001, retry_max_s=0.001))
    assert _run(pipe) == []
    assert isinstance(pipe.error, CameraError) and "3 time(s)" in str(pipe.error)


def test_a_full_disk_stops_recording_and_keeps_finished_stacks(tiny_runner, tmp_path, monkeypatch):
    import model.atomic as atomic

    real_fsync = atomic.os.fsync
    count = {"n": 0}

    def fsync(fd):
        count["n"] += 1
        if count["n"] > 14:  # the third stack runs out of space half-way
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    rec = StackRecorder(tmp_path / "rec", tiny_runner.lens.scaled_to((40, 30)))
    pipe = Pipeline(sim_factory(), tiny_runner, config=PipelineConfig(drop=False, max_stacks=5), recorder=rec)
    results = _run(pipe)
    assert len(results) == 5  # inference went on
    assert rec.error is not None and "disk full" in rec.error and not rec.active
    folders = find_stacks(tmp_path / "rec")
    assert 1 <= len(folders) <= 2
    for f in folders:
        assert read_stack(f).images.shape == (5, 30, 40, 3)
    leftovers = [p.name for p in (tmp_path / "rec").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the half-written stack was removed


def test_stop_from_another_thread_ends_the_run(tiny_runner):
    """``stop()`` from another thread ends ``results()`` and every pipeline thread.

    No wall-clock bound on how fast (``benchmarks/bench_soak.py`` measures the stop latency): the
    consumer runs in a thread and only a run still going after a generous 300 s (a hang) fails."""
    pipe = Pipeline(sim_factory(), tiny_runner, config=PipelineConfig(drop=True))
    pipe.start()
    got: list = []
    first = threading.Event()

    def consume() -> None:
        for r in pipe.results():
            got.append(r)
            first.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    try:
        assert first.wait(300), "no result within 300 s"
        threading.Thread(target=pipe.stop).start()
        consumer.join(300)
        assert not consumer.is_alive(), "results() still running 300 s after stop()"
        pipe.join(300)
    finally:
        pipe.stop()
    assert len(got) >= 1
    assert not any(t.is_alive() for t in pipe._threads)


def test_stats_snapshot_is_plain_numbers():
    s = PipelineStats()
    s.on_result(10.0, 30.0)
    s.on_result(20.0, 50.0)
    snap = s.snapshot()
    assert snap["infer_ms"]["mean"] == 15.0 and snap["e2e_ms"]["p50"] == 40.0
    import json

    json.dumps(snap)
