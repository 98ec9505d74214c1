"""The chart simulator makes its frames with the simulated cameras' one frame pipeline (model.synth.frame)."""

import numpy as np
import pytest

from calibration.chart import default_chart
from calibration.simulate import (ChartPose, ChartScene, ChartSimCamera, SimOptions, default_sim_lens, render_chart_frame,
                                  render_chart_linear)
from model.optics import sensor_distance_m
from model.synth.frame import SceneObject, render_frame, vignette

SPEC = default_chart()
LENS = default_sim_lens((160, 90))
POSE = ChartPose(0.4, (0.002, -0.001), 1.0)


def test_chart_frames_are_the_pipeline_with_the_chart_as_scene():
    opts = SimOptions(psf="disc", vignetting=0.3)
    dpt = LENS.focus_control.dioptres(2.5)
    via_pipeline = render_frame(ChartScene(SPEC, POSE, None, opts), LENS, dpt, opts.sensor(), np.random.default_rng(4),
                                vignetting=opts.vignetting)
    np.testing.assert_array_equal(render_chart_frame(SPEC, LENS, 2.5, POSE, options=opts, rng=np.random.default_rng(4)),
                                  via_pipeline)
    # the linear image: the scene's optics at the focus's sensor distance, then the pipeline's vignetting
    scene = ChartScene(SPEC, POSE, None, opts)
    np.testing.assert_array_equal(render_chart_linear(SPEC, LENS, 2.5, POSE, options=opts),
                                  vignette(scene.render(LENS, dpt, sensor_distance_m(dpt, LENS)), opts.vignetting))


def test_the_camera_frame_is_the_renderers_frame():
    with ChartSimCamera(lens=LENS, seed=9, distance_m=0.4, offset_m=POSE.offset_m, roll_deg=POSE.roll_deg) as cam:
        frame = cam.capture().image  # the lens is parked at the low end of the control range
        expected = render_chart_frame(SPEC, LENS, cam.control_range[0], cam.pose, options=cam.options,
                                      rng=np.random.default_rng(9))
    np.testing.assert_array_equal(frame, expected)


def test_the_chart_scene_has_no_objects():
    tex = np.zeros((3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="no moving objects"):
        render_frame(ChartScene(SPEC, POSE), LENS, 1.0, objects=[SceneObject(tex, np.ones((3, 3), np.float32), 0.3, 0, 0)])
