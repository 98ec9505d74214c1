"""Sensor noise model (NumPy and torch forms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.synth.noise import NO_NOISE, SensorNoise


def test_level_is_std_at_mid_grey_numpy_and_torch():
    n = SensorNoise.from_level(0.02)
    x = np.full((200, 200), 0.5, np.float32)
    y = n.apply(x, np.random.default_rng(0))
    assert y.std() == pytest.approx(0.02, rel=0.05)
    t = n.apply_torch(torch.full((200, 200), 0.5), torch.Generator().manual_seed(0))
    assert float(t.std()) == pytest.approx(0.02, rel=0.05)


def test_shot_noise_grows_with_signal():
    n = SensorNoise(shot_gain=1e-3, read_std=0.0)
    rng = np.random.default_rng(1)
    lo = n.apply(np.full(40000, 0.1, np.float32), rng).std()
    hi = n.apply(np.full(40000, 0.8, np.float32), rng).std()
    assert hi / lo == pytest.approx(np.sqrt(8), rel=0.1)


def test_quantisation_and_clipping():
    n = SensorNoise(0, 0, bits=4)
    y = n.apply(np.linspace(-0.2, 1.2, 101), np.random.default_rng(0))
    assert y.min() == 0 and y.max() == 1
    assert len(np.unique(y)) <= 16
    assert NO_NOISE.is_zero and not n.is_zero


@pytest.mark.parametrize("kw", [dict(shot_gain=-1), dict(read_std=float("nan")), dict(bits=0), dict(bits=3.5)])
def test_bad_params(kw):
    with pytest.raises(ValueError):
        SensorNoise(**kw)
    with pytest.raises(ValueError):
        SensorNoise.from_level(-0.1)
