import pytest
import torch

from model.checkpoint import check_lens_matches, load_checkpoint, save_checkpoint
from model.errors import CheckpointError
from model.lens import LensProfile
from model.network import DAIFNet, NetConfig


def test_save_load_roundtrip(tmp_path, lens):
    net = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12))
    p = save_checkpoint(tmp_path / "c.pt", net, lens, [4.0, 1.0, 2.0], config={"lr": 1e-3}, step=7)
    m = load_checkpoint(p)
    assert m.focus_m == [1.0, 2.0, 4.0] and m.step == 7 and m.config["lr"] == 1e-3
    assert m.lens == lens and not m.net.training
    x, f = torch.rand(1, 3, 3, 16, 16), torch.tensor([[1.0, 2.0, 4.0]])
    net.eval()
    torch.testing.assert_close(m.net(x, f).depth_m, net(x, f).depth_m)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(tmp_path / "o.pt")


def test_lens_mismatch_is_refused(lens):
    other = LensProfile(0.016, 1.4, 1.2e-5)
    with pytest.raises(CheckpointError, match="focal_length_m"):
        check_lens_matches(lens, other, "stack.json")
    check_lens_matches(lens, lens, "stack.json")
