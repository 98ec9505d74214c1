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


def test_base_include_merges_nested_keys(tmp_path):
    """A config's base: file is read first (relative to the config's folder), its own keys on top."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "a.yaml").write_text("steps: 10\ncrop: 32\nloss:\n  recon: 100\n  smooth: 2\n")
    (tmp_path / "recipes" / "b.yaml").write_text("base: a.yaml\ncrop: 48\nloss:\n  smooth: 5\n")
    cfg = load_config(TrainConfig, tmp_path / "recipes" / "b.yaml", ["steps=7"])
    assert (cfg.steps, cfg.crop) == (7, 48)
    assert (cfg.loss.recon, cfg.loss.smooth) == (100, 5)


def test_base_include_errors_name_the_file(tmp_path):
    (tmp_path / "x.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FormatError, match=r"x\.yaml: base: missing\.yaml not found"):
        load_config(TrainConfig, tmp_path / "x.yaml")
    (tmp_path / "p.yaml").write_text("base: q.yaml\n")
    (tmp_path / "q.yaml").write_text("base: p.yaml\nsteps: 3\n")
    with pytest.raises(FormatError, match="cycle"):
        load_config(TrainConfig, tmp_path / "p.yaml")
    (tmp_path / "n.yaml").write_text("base: [1, 2]\n")
    with pytest.raises(FormatError, match="another YAML config"):
        load_config(TrainConfig, tmp_path / "n.yaml")
    (tmp_path / "u.yaml").write_text("base: x2.yaml\n")
    (tmp_path / "x2.yaml").write_text("stpes: 3\n")
    with pytest.raises(FormatError, match="unknown config key"):
        load_config(TrainConfig, tmp_path / "u.yaml")


def test_relblur_recipe_is_lens_aware_plus_the_relative_blur_term():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "model" / "configs"
    a = config_to_dict(load_config(TrainConfig, root / "lens_aware.yaml"))
    b = config_to_dict(load_config(TrainConfig, root / "relblur.yaml"))
    changed = {k for k in a if a[k] != b[k]}
    assert changed == {"out_dir", "loss"}
    assert {k for k in a["loss"] if a["loss"][k] != b["loss"][k]} == {"relblur"}


def test_gpu_relblur_config_is_the_relblur_recipe_on_the_gpu_generator():
    """gpu_relblur.yaml (scripts/gpu_session.sh) loads and validates: relblur.yaml's lens-aware recipe, the relative-
    blur term, stacks made on the training device."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "model" / "configs" / "gpu_relblur.yaml"
    cfg = load_config(TrainConfig, path)
    cfg.validate()
    assert cfg.lens_aware and cfg.freeze_bn and cfg.loss.relblur == 3000.0
    assert (cfg.data, cfg.device, cfg.num_workers, cfg.amp) == ("gpu_synthetic", "cuda", 0, True)
    assert cfg.val_suite == "data/suite_tune3" and cfg.init == "model/default/daifnet.pt"
