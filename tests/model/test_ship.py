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


def test_ship_keeps_a_backup_of_the_model_it_replaces(tmp_path, tiny_checkpoint, capsys):
    from model.ship import main

    dest = tmp_path / "out" / "daifnet.pt"
    ship(tiny_checkpoint, dest)
    first = dest.read_bytes()
    first_lens = (tmp_path / "out" / "lens.json").read_bytes()
    assert main([str(tiny_checkpoint), "--dest", str(dest)]) == 0
    backups = sorted((tmp_path / "out" / "backups").glob("daifnet-*.pt"))
    assert len(backups) == 1 and backups[0].read_bytes() == first
    assert backups[0].with_name(backups[0].stem + "-lens.json").read_bytes() == first_lens
    assert f"kept the model it replaced as {backups[0]}" in capsys.readouterr().out
    assert main([str(tiny_checkpoint), "--dest", str(dest)]) == 0  # a second ship keeps a second backup
    assert len(list((tmp_path / "out" / "backups").glob("daifnet-*.pt"))) == 2
    assert main([str(tiny_checkpoint), "--dest", str(tmp_path / "new" / "daifnet.pt")]) == 0
    assert not (tmp_path / "new" / "backups").exists()  # nothing replaced, nothing kept
