import numpy as np
import pytest

from model.metrics import aggregate, depth_metrics, psnr


def test_perfect_and_known_errors():
    gt = np.full((4, 4), 2.0)
    m = depth_metrics(gt, gt)
    assert m["abs_rel"] == 0 and m["d1"] == 1 and m["rmse"] == 0
    pred = gt * 1.5  # ratio 1.5: fails delta1 (1.25), passes delta2 (1.5625)
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.5) and m["d1"] == 0 and m["d2"] == 1
    assert m["rmse"] == pytest.approx(1.0)


def test_unknown_pixels_ignored_and_errors():
    gt = np.array([[1.0, np.nan], [0.0, np.inf]])
    pred = np.array([[1.0, 5.0], [5.0, 5.0]])
    assert depth_metrics(pred, gt)["pixels"] == 1
    with pytest.raises(ValueError, match="no valid"):
        depth_metrics(pred, np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(pred, np.ones((3, 3)))


def test_aggregate_and_psnr():
    agg = aggregate([{"abs_rel": 0.1, "pixels": 3}, {"abs_rel": 0.3, "pixels": 9}])
    assert agg["abs_rel"] == pytest.approx(0.2) and agg["stacks"] == 2
    assert psnr(np.zeros((2, 2)), np.full((2, 2), 0.1)) == pytest.approx(20.0)
