"""Colour maps with a metres scale, the live page's HTTP endpoints, and the page in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from device.live import LiveServer, LiveState
from device.visual import (
    colorize_confidence,
    colorize_depth,
    depth_at,
    depth_ticks,
    depth_to_unit,
    depth_with_scale_bar,
    scale_bar,
    unit_to_depth,
)


def test_colour_map_runs_from_blue_far_to_red_near_and_marks_unknown_black():
    d = np.array([[0.5, 12.0, np.nan, -1.0]], np.float32)
    rgb = colorize_depth(d, 0.5, 12.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    near, far = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert near[0] > near[2] and far[2] > far[0]
    assert np.all(rgb[0, 2:] == 0)
    with pytest.raises(ValueError):
        colorize_depth(d, 5.0, 1.0)


def test_unit_mapping_is_linear_in_inverse_depth_and_invertible():
    t = depth_to_unit(np.array([0.5, 1.0, 12.0]), 0.5, 12.0)
    assert t[0] == 1.0 and t[2] == 0.0
    assert t[1] == pytest.approx((1 - 1 / 12) / (2 - 1 / 12))
    assert unit_to_depth(t, 0.5, 12.0) == pytest.approx([0.5, 1.0, 12.0])


def test_ticks_are_round_metres_in_range_and_never_crowded():
    ticks = depth_ticks(0.5, 12.0)
    assert ticks[0] == 0.5 and ticks[-1] == 12.0 and 1.0 in ticks
    pos = depth_to_unit(np.array(ticks), 0.5, 12.0)
    assert np.all(np.abs(np.diff(np.sort(pos))) >= 0.09 - 1e-9)


def test_scale_bar_and_panel_shapes():
    bar = scale_bar(240, 0.5, 12.0)
    assert bar.shape == (240, 78, 3) and bar.dtype == np.uint8
    assert bar.std() > 20  # a gradient and labels, not a blank strip
    small = depth_with_scale_bar(np.full((30, 40), 2.0, np.float32), 0.5, 12.0)
    assert small.shape[0] >= 160 and small.shape[1] == 40 * (small.shape[0] // 30) + 78
    assert colorize_confidence(np.linspace(0, 1, 12).reshape(3, 4)).shape == (3, 4, 3)
    assert depth_at(np.full((3, 4), 2.5), 3, 2) == 2.5 and depth_at(np.full((3, 4), 2.5), 4, 0) is None


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:  # only a hang reaches this
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), ""


@pytest.fixture
def live():
    state = LiveState(0.5, 12.0, runtime="torch", camera="sim")
    with LiveServer(state, port=0) as server:
        yield state, server


def _update(state: LiveState) -> np.ndarray:
    depth = np.tile(np.linspace(1.0, 8.0, 40, dtype=np.float32), (30, 1))
    state.update(depth, np.full((30, 40, 3), 0.5, np.float32), np.full((30, 40), 0.8, np.float32),
                 {"stacks_inferred": 1, "capture_fps": 30.0, "infer_ms": {"mean": 12.0}}, [1.0, 2.0])
    return depth


def test_live_endpoints_serve_the_page_images_state_and_depth_under_the_pointer(live):
    state, server = live
    assert server.url.startswith("http://127.0.0.1:")
    code, body, ctype = _get(server.url)
    assert code == 200 and b"depth under the pointer" in body and "text/html" in ctype
    assert _get(server.url + "depth.png")[0] == 503  # nothing yet
    depth = _update(state)
    s = json.loads(_get(server.url + "state.json")[1])
    assert s["seq"] == 1 and (s["width"], s["height"]) == (40, 30) and s["stats"]["capture_fps"] == 30.0
    for name in ("aif", "depth", "confidence", "scale"):
        code, body, ctype = _get(server.url + f"{name}.png?seq=1")
        assert code == 200 and body[:8] == b"\x89PNG\r\n\x1a\n" and ctype == "image/png"
    j = json.loads(_get(server.url + "depth_at?x=39&y=5")[1])
    assert j["depth_m"] == pytest.approx(float(depth[5, 39]))
    assert json.loads(_get(server.url + "depth_at?x=99&y=5")[1])["depth_m"] is None
    assert _get(server.url + "depth_at?x=a")[0] == 400
    assert _get(server.url + "secret")[0] == 404


def test_live_server_refuses_non_loopback_hosts():
    with pytest.raises(ValueError, match="loopback"):
        LiveServer(LiveState(0.5, 12.0), port=0, host="0.0.0.0")


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
def test_the_live_page_shows_a_depth_image_in_headless_chromium(live, tmp_path):
    state, server = live
    depth = _update(state)
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000", "--dump-dom",
           server.url + "?probe=10,20"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # a hang guard, not a speed bound
    dom = out.stdout
    assert 'data-depth-loaded="1"' in dom, out.stderr[-2000:]
    assert '<span id="depth-size" hidden="">40x30</span>' in dom
    assert f"(10, 20): {float(depth[20, 10]):.2f} m" in dom
    assert "capture     30.0 frames/s" in dom
