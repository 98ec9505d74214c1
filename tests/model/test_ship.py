import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.ship import ship


def test_ship_writes_slim_half_checkpoint_and_lens(tmp_path, tiny_checkpoint):
    dest, diff = ship(tiny_checkpoint, tmp_path / "out" / "daifnet.pt")
    obj = read_checkpoint(dest)
    assert "optimizer" not in obj
    assert all(v.dtype == torch.float16 for v in obj["state_dict"].values() if v.is_floating_point())
    m = load_checkpoint(dest)
    assert next(m.net.parameters()).dtype == torch.float32
    assert diff < 0.05 and (tmp_path / "out" / "lens.json").is_file()
    assert not list((tmp_path / "out").glob("*.check.pt"))
