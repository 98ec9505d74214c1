"""The printable chart: layout, files, description round trip."""

import json
import math

import numpy as np
import pytest

from calibration.chart import ChartSpec, default_chart, load_chart, rasterize_page, write_target
from model.errors import FormatError


def test_default_chart_fits_a4_with_margins():
    spec = default_chart()
    w, h = spec.chart_size_m
    pw, ph = spec.paper_size_m
    assert (pw, ph) == (0.297, 0.210)
    assert w < pw - 0.02 and h < ph - 0.04
    centres = spec.centres_m
    assert centres.shape == (6, 2)
    np.testing.assert_allclose(centres.mean(0), 0.0, atol=1e-12)
    # every square lies inside the chart area
    for sq in spec.squares():
        c = sq.corners_m()
        assert np.all(np.abs(c[:, 0]) < w / 2) and np.all(np.abs(c[:, 1]) < h / 2)
        side = np.linalg.norm(c[1] - c[0])
        assert side == pytest.approx(0.05)


def test_square_corners_turn_counter_clockwise_on_the_page():
    sq = default_chart().squares()[0]
    c = sq.corners_m() - np.asarray(sq.centre_m)
    # the top edge (y down) rises to the right for a counter-clockwise turn
    assert c[1, 1] < c[0, 1]
    angle = math.degrees(math.atan2(-(c[1, 1] - c[0, 1]), c[1, 0] - c[0, 0]))
    assert angle == pytest.approx(5.0)


def test_write_target_files(tmp_path):
    paths = write_target(tmp_path, dpi=100)
    from PIL import Image

    im = Image.open(paths["png"])
    assert im.size == (round(0.297 / 0.0254 * 100), round(0.210 / 0.0254 * 100))
    assert im.info["dpi"][0] == pytest.approx(100, abs=0.01)
    pdf = paths["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF")
    # A4 landscape in points
    assert b"/MediaBox [ 0 0 841.889" in pdf
    d = json.loads(paths["json"].read_text())
    assert d["format"] == "calibration-chart/1" and d["image"] == "chart.png" and d["pdf"] == "chart.pdf"
    assert d["width_m"] == pytest.approx(default_chart().chart_size_m[0])
    assert len(d["squares"]) == 6 and d["ruler"]["length_m"] == pytest.approx(0.2)
    back = load_chart(paths["json"])
    assert back == default_chart()


def test_rasterised_squares_are_where_the_description_says():
    spec = default_chart()
    k = 2000.0  # px per metre
    img = rasterize_page(spec, k, text=False)
    pw, ph = spec.paper_size_m
    assert img.shape == (round(ph * k), round(pw * k))
    for sq in spec.squares():
        x = int((sq.centre_m[0] + pw / 2) * k)
        y = int((sq.centre_m[1] + ph / 2) * k)
        assert img[y, x] < 0.01
    # dark area equals the squares' area
    assert (1 - img).sum() / k**2 == pytest.approx(6 * 0.05**2, rel=2e-3)


def test_print_scale_scales_everything():
    spec = default_chart().with_scale(0.97)
    assert spec.squares()[0].side_m == pytest.approx(0.05 * 0.97)
    assert spec.centres_m[1, 0] - spec.centres_m[0, 0] == pytest.approx(0.08 * 0.97)
    back = ChartSpec.from_dict(spec.to_dict())
    assert back.scale == pytest.approx(0.97) and back.square_m == pytest.approx(0.05)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"paper": "B5"}, "unknown paper"), ({"columns": 1}, "at least 2"), ({"square_m": 0.09}, "too little white|does not fit"),
     ({"rotation_deg": 0.0}, "slanted"), ({"columns": 5}, "does not fit")],
)
def test_bad_layouts_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChartSpec(**kwargs)


def test_load_chart_errors_name_file_and_key(tmp_path):
    p = tmp_path / "chart.json"
    p.write_text("{not json")
    with pytest.raises(FormatError, match="chart.json: not valid JSON"):
        load_chart(p)
    d = default_chart().to_dict()
    d["grid"]["pitch_m"] = [0.08]
    p.write_text(json.dumps(d))
    with pytest.raises(FormatError, match="grid.pitch_m"):
        load_chart(p)
    d = default_chart().to_dict()
    d["format"] = "other"
    p.write_text(json.dumps(d))
    with pytest.raises(FormatError, match="format"):
        load_chart(p)
    with pytest.raises(FormatError, match="cannot read"):
        load_chart(tmp_path / "missing.json")


def test_distance_limits_keep_the_chart_in_view_and_the_squares_large():
    spec = default_chart()
    near, far = spec.distance_limits_m((640, 360), 470.0)
    w, h = spec.chart_size_m
    assert 470.0 * h / near == pytest.approx(0.9 * 360)  # the height is the tighter limit at 16:9
    assert 470.0 * 0.05 / far == pytest.approx(24)
