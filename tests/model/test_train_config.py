"""TrainConfig: the training-data options psf_mix, psf_beta, psf_min_blur_px, breathing and photo_dir."""

from __future__ import annotations

import pytest

from model.config import load_config
from model.train_config import TrainConfig


def test_defaults_are_off():
    cfg = load_config(TrainConfig, None, [])
    cfg.validate()
    assert cfg.psf_mix is None and cfg.psf_beta == [2.0, 8.0] and cfg.psf_min_blur_px == 0.0
    assert cfg.breathing == 0.0 and cfg.photo_dir is None


def test_overrides_parse_and_validate(tmp_path):
    cfg = load_config(TrainConfig, None, ["psf_mix=[0.5, 0.25, 0.25]", "psf_beta=[3, 6]", "psf_min_blur_px=0.29",
                                          "breathing=0.15", f"photo_dir={tmp_path}"])
    cfg.validate()
    assert cfg.psf_mix == [0.5, 0.25, 0.25] and cfg.psf_beta == [3, 6] and cfg.breathing == 0.15


@pytest.mark.parametrize(
    "over, match",
    [
        (["psf_mix=[0.5, 0.5]"], "psf_mix"),
        (["psf_mix=[0.5, 0.6, 0.1]"], "psf_mix"),
        (["psf_mix=[1, 0, 0]", "disc_prob=0.5"], "not both"),
        (["psf_beta=[0.5, 2]"], "psf_beta"),
        (["psf_min_blur_px=-1"], "psf_min_blur_px"),
        (["breathing=2"], "breathing"),
        (["photo_dir=/nonexistent/photos"], "get_photos"),
    ],
)
def test_bad_values_are_refused(over, match):
    cfg = load_config(TrainConfig, None, over)
    with pytest.raises(ValueError, match=match):
        cfg.validate()
