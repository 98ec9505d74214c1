"""``device.focus_plan``: the focus sweep of ``device.capture --range`` planned from the lens and checked."""

from __future__ import annotations

import numpy as np
import pytest

from device.cameras import open_camera
from device.cameras.simulated import default_lens
from device.focus_plan import plan_capture_focus
from model.sweep_plan import plan_focus_distances


def test_plan_is_the_library_plan_with_control_values():
    lens = default_lens()
    with open_camera("sim", lens=lens, size=(80, 60), realtime=False) as cam:
        p = plan_capture_focus(lens, 1.0, 4.0, 5, camera=cam)
    ref = plan_focus_distances(lens, 1.0, 4.0, 5)
    assert np.allclose(p.focus_m, ref.focus_m) and p.focus_m == sorted(p.focus_m) and len(p.focus_m) == 5
    assert p.control_name == "LensPosition" and np.allclose(p.control_values, 1.0 / np.asarray(p.focus_m))
    text = "\n".join(p.lines())
    assert "sweep plan for 1-4 m, 5 frames" in text and "LensPosition" in text
    assert f"{p.focus_m[0]:.3g}" in text and "warning" not in text
    d = p.to_dict()
    assert d["range_m"] == [1.0, 4.0] and d["focus_m"] == p.focus_m and d["control"] == "LensPosition"


def test_lens_without_focus_control_gives_no_control_values():
    from dataclasses import replace

    p = plan_capture_focus(replace(default_lens(), focus_control=None), 1.0, 4.0, 3)
    assert p.control_values is None and len(p.focus_m) == 3 and "LensPosition" not in p.lines()[0]


def test_range_the_lens_cannot_resolve_carries_the_lens_warning():
    lens = default_lens().scaled_to((80, 60))  # 4x coarser pixels: about 1.6 px per dioptre
    p = plan_capture_focus(lens, 1.0, 20.0, 5)
    assert any("cannot tell depths apart" in w and "What helps" in w for w in p.warnings)
    assert any(line.startswith("warning: the lens cannot tell depths apart") for line in p.lines())


def test_range_outside_the_model_is_a_warning():
    p = plan_capture_focus(default_lens(), 1.0, 4.0, 5, model_range_m=(0.5, 3.0))
    assert any("the model predicts depth only in 0.5-3 m" in w for w in p.warnings)
    assert not plan_capture_focus(default_lens(), 1.0, 4.0, 5, model_range_m=(0.5, 12.0)).warnings


def test_distances_the_camera_cannot_focus_are_refused_naming_them():
    lens = default_lens()
    with open_camera("sim", lens=lens, size=(80, 60), realtime=False, control_range=(0.0, 2.0)) as cam:  # 0.5 m..inf
        with pytest.raises(ValueError, match=r"needs focus at .* outside this sim camera's focus range 0\.5 m to infinity"):
            plan_capture_focus(lens, 0.2, 1.0, 5, camera=cam)


@pytest.mark.parametrize("near,far,frames,msg", [(2.0, 1.0, 5, "beyond its near end"), (1.0, 4.0, 1, "frames"),
                                                 (-1.0, 4.0, 5, "positive")])
def test_bad_range_or_frames_is_a_value_error(near, far, frames, msg):
    with pytest.raises(ValueError, match=msg):
        plan_capture_focus(default_lens(), near, far, frames)
