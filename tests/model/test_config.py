import pytest

from model.config import config_to_dict, load_config
from model.errors import FormatError
from model.train_config import TrainConfig


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 10\ncrop: 32\nloss:\n  recon: 100\n")
    cfg = load_config(TrainConfig, p, ["batch_size=2", "loss.smooth=1", "focus_m=[1, 2, 3]", "lr=1e-4"])
    assert cfg.lr == 1e-4
    assert (cfg.steps, cfg.crop, cfg.batch_size) == (10, 32, 2)
    assert cfg.loss.recon == 100 and cfg.loss.smooth == 1 and cfg.focus_m == [1.0, 2.0, 3.0]
    assert config_to_dict(cfg)["loss"]["recon"] == 100


def test_unknown_keys_and_bad_types(tmp_path):
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(TrainConfig, None, ["stpes=3"])
    with pytest.raises(ValueError, match="integer"):
        load_config(TrainConfig, None, ["steps=many"])
    p = tmp_path / "bad.yaml"
    p.write_text("crop: [1, 2\n")
    with pytest.raises(FormatError, match="bad.yaml"):
        load_config(TrainConfig, p)


def test_validate():
    cfg = load_config(TrainConfig, None, ["crop=30"])
    with pytest.raises(ValueError, match="multiple of 16"):
        cfg.validate()
    cfg = load_config(TrainConfig, None, ["data=folder"])
    with pytest.raises(ValueError, match="data_dir"):
        cfg.validate()


@pytest.mark.parametrize("name", ["default.yaml", "gpu.yaml", "nyuv2.yaml"])
def test_shipped_configs_load_and_validate(name):
    """The recipes in model/configs/ use only known keys of the right types and pass validate()."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "model" / "configs" / name
    cfg = load_config(TrainConfig, path)
    cfg.validate()
    assert cfg.focus_m == [1.0, 1.5, 2.5, 4.0, 6.0]


@pytest.mark.parametrize("name, relblur", [("lens_aware.yaml", 0.0), ("relblur.yaml", 3000.0)])
def test_lens_aware_configs_load_and_validate(name, relblur):
    """The lens-aware recipes load, validate and carry their relative-blur weight (0 = term off)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "model" / "configs" / name
    cfg = load_config(TrainConfig, path)
    cfg.validate()
    assert cfg.lens_aware and cfg.freeze_bn
    assert cfg.loss.relblur == relblur
    assert cfg.init == "model/default/daifnet.pt"
