import math

import numpy as np
import pytest
import torch

from model.optics import coc_diameter_m, coc_sigma_px, defocus_sigma_map, max_sigma_px, working_range_m


def test_coc_formula_by_hand(lens):
    # f=50mm, N=8 -> A=6.25mm; d=3, df=1: c = A f |d-df| / (d (df-f)) = 6.25e-3*0.05*2/(3*0.95)
    c = coc_diameter_m(3.0, 1.0, lens)
    assert c == pytest.approx(6.25e-3 * 0.05 * 2 / (3 * 0.95))
    assert coc_sigma_px(3.0, 1.0, lens) == pytest.approx(c / (4 * 1.2e-5))
    assert coc_diameter_m(2.0, 2.0, lens) == 0.0


def test_numpy_and_torch_agree(lens):
    d = np.linspace(0.6, 10, 17)
    t = coc_sigma_px(torch.tensor(d), 1.5, lens).numpy()
    np.testing.assert_allclose(coc_sigma_px(d, 1.5, lens), t, rtol=1e-12)


def test_sigma_map_shape_and_checks(lens):
    depth = torch.full((2, 1, 4, 5), 2.0)
    focus = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    s = defocus_sigma_map(depth, focus, lens)
    assert s.shape == (2, 3, 4, 5)
    assert s[0, 1].abs().max() == 0
    with pytest.raises(ValueError):
        defocus_sigma_map(depth[:, 0], focus, lens)


def test_working_range_and_max_sigma(lens):
    near, far = working_range_m([1, 1.5, 2.5, 4, 6], lens)
    assert (near, far) == (0.5, 12.0)
    m = max_sigma_px([1, 6], lens, near, far)
    assert m == pytest.approx(float(coc_sigma_px(0.5, 6.0, lens)))
    with pytest.raises(ValueError, match="positive finite"):
        working_range_m([1.0, math.inf], lens)
    with pytest.raises(ValueError, match="focal length"):
        working_range_m([0.01], lens)
