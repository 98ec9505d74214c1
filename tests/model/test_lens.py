import json

import pytest

from model.errors import FormatError
from model.lens import FocusControl, LensProfile


def test_roundtrip_keeps_extra_keys(tmp_path, lens):
    p = tmp_path / "lens.json"
    lens2 = LensProfile(0.00474, 1.8, 1.4e-6, name="cm3", image_size=(4608, 2592),
                        focus_control=FocusControl(a=1.0, b=0.0), fit={"rms_residual_px": 0.1},
                        extra={"settle_time_s": 0.04})
    lens2.save(p)
    d = json.loads(p.read_text())
    assert d["format"] == "lens/1" and d["settle_time_s"] == 0.04
    back = LensProfile.load(p)
    assert back == lens2


def test_scaled_to_rescales_pitch(lens):
    half = lens.scaled_to((160, 120))
    assert half.pixel_pitch_m == pytest.approx(2.4e-5)
    assert half.image_size == (160, 120)
    with pytest.raises(ValueError, match="aspect"):
        lens.scaled_to((160, 160))


@pytest.mark.parametrize(
    "patch,key",
    [({"format": "lens/2"}, "format"), ({"f_number": -1}, "f_number"), ({"focal_length_m": "x"}, "focal_length_m"),
     ({"pixel_pitch_m": float("nan")}, "pixel_pitch_m"), ({"image_size": [1]}, "image_size"),
     ({"focus_control": {"model": "poly"}}, "focus_control.model")],
)
def test_bad_profiles_name_file_and_key(tmp_path, lens, patch, key):
    d = lens.to_dict()
    d.update(patch)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d).replace("NaN", "NaN"))
    with pytest.raises(FormatError) as e:
        LensProfile.load(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_missing_key_and_bad_json(tmp_path, lens):
    d = lens.to_dict()
    del d["f_number"]
    p = tmp_path / "x.json"
    p.write_text(json.dumps(d))
    with pytest.raises(FormatError, match="f_number: missing"):
        LensProfile.load(p)
    p.write_text("{nope")
    with pytest.raises(FormatError, match="not valid JSON"):
        LensProfile.load(p)


def test_focus_control_inverse():
    fc = FocusControl(a=0.5, b=0.1)
    assert fc.distance_m(fc.control_value(2.0)) == pytest.approx(2.0)
    assert fc.distance_m(-0.2) == float("inf")


def test_implausible_lens_values_and_bad_focus_control_are_refused_naming_the_key(tmp_path):
    import json as _json

    import pytest as _pytest

    from model.errors import FormatError
    from model.lens import LensProfile as _LP

    base = {"format": "lens/1", "focal_length_m": 0.05, "f_number": 8.0, "pixel_pitch_m": 1.2e-5}
    for key, value, words in (("focal_length_m", 50.0, "metres"), ("pixel_pitch_m", 12.0, "metres per pixel"),
                              ("f_number", 180.0, "f-number")):
        p = tmp_path / f"{key}.json"
        p.write_text(_json.dumps({**base, key: value}))
        with _pytest.raises(FormatError, match=rf"{key}.*not a plausible value.*{words}") as e:
            _LP.load(p)
        assert str(p) in str(e.value)
    p = tmp_path / "a0.json"
    p.write_text(_json.dumps({**base, "focus_control": {"a": 0, "b": 1.0}}))
    with _pytest.raises(FormatError, match=r"focus_control\.a.*is 0"):
        _LP.load(p)
    p = tmp_path / "typo.json"
    p.write_text(_json.dumps({**base, "focus_control": {"a": 1.0, "bb": 1.0}}))
    with _pytest.raises(FormatError, match=r"focus_control\.bb.*unknown key"):
        _LP.load(p)
