"""Chart measurement in single frames rendered with a known scale and blur."""

import math

import numpy as np
import pytest

from calibration.chart import default_chart
from calibration.measure import MeasureConfig, linearize, measure_frame
from calibration.simulate import ChartPose, SimOptions, default_sim_lens, defocus_sigma_px, image_scale_px_per_m, render_chart_frame

SPEC = default_chart()
LENS = default_sim_lens((480, 270))


def _frame(control, distance, options=SimOptions(), seed=0, pose=None):
    pose = pose or ChartPose(distance, (0.003, -0.002), 1.5)
    img = render_chart_frame(SPEC, LENS, control, pose, options=options, rng=np.random.default_rng(seed))
    truth_scale = image_scale_px_per_m(LENS, control, distance)
    truth_sigma = math.hypot(defocus_sigma_px(LENS, control, distance), options.intrinsic_blur_px)
    return img, truth_scale, truth_sigma


@pytest.mark.parametrize("control,distance", [(0.0, 0.35), (3.0, 0.35), (10.0, 0.35), (2.0, 0.6), (10.0, 0.6)])
def test_scale_and_blur_of_gaussian_frames(control, distance):
    img, k, s = _frame(control, distance)
    m = measure_frame(img, SPEC)
    assert m.found and not m.over_exposed, m.problem
    assert m.scale_px_per_m == pytest.approx(k, rel=5e-4)
    assert m.sigma_px == pytest.approx(s, abs=0.03 + 0.01 * s)
    assert abs(m.roll_deg % 180 - 1.5) < 0.2 or abs(m.roll_deg % 180 - 181.5) < 0.2
    assert max(abs(m.keystone[0]), abs(m.keystone[1])) < 5e-3
    assert 0.5 < m.contrast < 0.8


def test_disc_psf_reads_its_moment_matched_sigma():
    """A uniform-disc PSF: the moment measure gives c/(4p) (in quadrature with the lens's own blur),
    the best-fitting Gaussian reads several per cent more."""
    opts = SimOptions(psf="disc")
    img, k, s = _frame(10.0, 0.35, opts)
    moment = measure_frame(img, SPEC)
    gauss = measure_frame(img, SPEC, MeasureConfig(blur="gauss"))
    assert moment.sigma_px == pytest.approx(s, rel=0.03)
    assert gauss.sigma_px > 1.04 * s
    assert moment.scale_px_per_m == pytest.approx(k, rel=5e-4)


def test_linear_frames_need_gamma_linear():
    lin_opts = SimOptions(read_noise=0.0, shot_noise=0.0, bit_depth=16)
    img, _, s = _frame(8.0, 0.35, lin_opts)
    linear = np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)
    m_ok = measure_frame(linear, SPEC, MeasureConfig(gamma="linear"))
    m_wrong = measure_frame(linear, SPEC)  # decoding a linear image twice distorts the edges
    assert m_ok.sigma_px == pytest.approx(s, rel=0.03)
    assert abs(m_wrong.sigma_px - s) > abs(m_ok.sigma_px - s)
    np.testing.assert_allclose(linearize(img[..., 0], "linear"), img[..., 0])


def test_chart_not_in_view_or_cut_off():
    blank = np.full((270, 480, 3), 0.5, np.float32)
    m = measure_frame(blank, SPEC)
    assert not m.found and "not found" in m.problem
    img, _, _ = _frame(3.0, 0.35, pose=ChartPose(0.35, (0.2, 0.0), 0.0))  # a column of squares out of view
    m = measure_frame(img, SPEC)
    assert not m.found


def test_over_exposure_is_flagged():
    img, _, _ = _frame(3.0, 0.45, SimOptions(white=1.6))
    m = measure_frame(img, SPEC)
    assert m.found and m.over_exposed and not m.usable
    assert "over-exposed" in m.problem


def test_bad_input_raises():
    with pytest.raises(ValueError, match="image"):
        measure_frame(np.zeros((8, 8, 3)), SPEC)
    with pytest.raises(ValueError, match="gamma"):
        MeasureConfig(gamma="rec709")
