"""The device-side batch generator (model.synth.gpu_batches): the CPU path's layout, determinism, scene ranges,
the lens-aware draw, physical consistency with the training renderer, and the trainer's data=gpu_synthetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import SynthConfig, SyntheticStacks
from model.lens import LensProfile
from model.lens_sampling import LensSampling
from model.optics import blur_per_dioptre_px
from model.render import rerender_stack
from model.synth.gpu_batches import DeviceBatches, PhotoBank
from model.synth.noise import NO_NOISE, SensorNoise

FOCUS = (1.0, 1.5, 2.5, 4.0, 6.0)


@pytest.fixture(scope="module")
def test_lens() -> LensProfile:
    return LensProfile(0.05, 8.0, 1.2e-5, name="test-50mm", image_size=(320, 240))


def _cfg(lens: LensProfile, **kw) -> SynthConfig:
    base = dict(crop_hw=(32, 32), focus_m=FOCUS, batch_size=2, seed=3, max_psf_radius=8, noise=SensorNoise.from_level(0.01))
    base.update(kw)
    return SynthConfig(lens, **base)


def _lens_sampling() -> LensSampling:
    return LensSampling(k_range=(1.0, 10.0), stack_size=(3, 4), far_scene_prob=0.3, near_scene_prob=0.2)


def _check_like_cpu(dev: dict[str, torch.Tensor], cpu: dict[str, torch.Tensor]) -> None:
    assert set(dev) == set(cpu)
    for k in cpu:
        assert dev[k].dtype == cpu[k].dtype, k
        assert dev[k].dim() == cpu[k].dim(), k
    b, s = cpu["images"].shape[:2]
    assert dev["images"].shape[0] == b and dev["images"].shape[2:] == cpu["images"].shape[2:]
    assert dev["focus_m"].shape == dev["images"].shape[:2]
    assert dev["depth"].shape == cpu["depth"].shape and dev["aif"].shape == cpu["aif"].shape
    for k in ("images", "aif"):
        assert 0.0 <= float(dev[k].min()) and float(dev[k].max()) <= 1.0, k
    assert torch.isfinite(dev["depth"]).all() and float(dev["depth"].min()) > 0
    assert bool((dev["focus_m"][:, 1:] > dev["focus_m"][:, :-1]).all())  # nearest focus first


def test_batch_layout_matches_the_cpu_path(test_lens):
    cfg = _cfg(test_lens)
    dev = DeviceBatches(cfg).make(0)
    _check_like_cpu(dev, SyntheticStacks(cfg).make(0))
    assert dev["images"].shape == (2, 5, 3, 32, 32)
    assert torch.allclose(dev["focus_m"], torch.tensor(FOCUS).expand(2, 5))
    # items when batch_size is None, as SyntheticStacks
    one = _cfg(test_lens, batch_size=None)
    _check_like_cpu({k: v[None] for k, v in DeviceBatches(one).make(1).items()},
                    {k: v[None] for k, v in SyntheticStacks(one).make(1).items()})


def test_lens_aware_batch_layout_and_k(test_lens):
    cfg = _cfg(test_lens, lens_sampling=_lens_sampling(), batch_size=3)
    gen = DeviceBatches(cfg)
    _check_like_cpu(gen.make(0), SyntheticStacks(cfg).make(0))
    x_lo, x_hi = cfg.lens_sampling.x_range
    sizes = set()
    for i in range(4):
        b = gen.make(i)
        sizes.add(b["images"].shape[1])
        lens = LensProfile(*(float(v) for v in b["lens"][0]), name="draw")
        assert torch.equal(b["lens"], b["lens"][:1].expand(3, 3))  # one lens per batch
        assert torch.allclose(b["k"], torch.full((3,), blur_per_dioptre_px(lens)))
        assert torch.equal(b["focus_m"], b["focus_m"][:1].expand_as(b["focus_m"]))  # one focus set per batch
        k = float(b["k"][0])
        assert float(b["depth"].min()) >= k / x_hi * (1 - 1e-5) and float(b["depth"].max()) <= k / x_lo * (1 + 1e-5)
    assert sizes <= {3, 4}


def test_deterministic_per_index_and_seed(test_lens):
    a = DeviceBatches(_cfg(test_lens)).make(3)
    b = DeviceBatches(_cfg(test_lens)).make(3)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    gen = DeviceBatches(_cfg(test_lens))
    assert not torch.equal(gen.make(4)["depth"], a["depth"])
    assert not torch.equal(gen.make(4)["images"], a["images"])
    assert not torch.equal(DeviceBatches(_cfg(test_lens, seed=4)).make(3)["aif"], a["aif"])
    gen.set_epoch(1)
    assert not torch.equal(gen.make(3)["depth"], a["depth"])


def test_depth_within_the_scene_range_with_occluders_and_slants(test_lens):
    cfg = _cfg(test_lens, scene_range_m=(1.2, 5.0), batch_size=4, crop_hw=(48, 40))
    gen = DeviceBatches(cfg)
    occluded, slanted = 0, 0
    for i in range(3):
        d = gen.make(i)["depth"]
        assert d.shape == (4, 1, 48, 40)
        assert float(d.min()) >= 1.2 * (1 - 1e-6) and float(d.max()) <= 5.0 * (1 + 1e-6)
        for j in range(4):
            inv = 1.0 / d[j, 0].double()
            gy, gx = torch.diff(inv, dim=0).abs(), torch.diff(inv, dim=1).abs()
            occluded += int(max(float(gy.max()), float(gx.max())) > 0.03)  # a depth edge (planes change < 0.01 dpt/px)
            slanted += int(float((gy > 1e-7).float().mean()) > 0.5 or float((gx > 1e-7).float().mean()) > 0.5)
    assert occluded >= 6  # 1-6 objects in front of the background
    assert 1 <= slanted < 12


def test_rendering_is_the_training_renderer_of_its_own_depth_and_aif(test_lens):
    cfg = _cfg(test_lens, noise=NO_NOISE, vignetting=0.3, max_psf_radius=10)
    b = DeviceBatches(cfg).make(2)
    near, far = cfg.working_range_m
    again, sigma = rerender_stack(b["aif"], b["depth"].clamp(near, far), b["focus_m"], test_lens, max_radius=10, per_frame_radius=True)
    assert torch.allclose(b["images"], again.clamp(0, 1), atol=1e-6)
    assert float(sigma.amax()) > 1.0  # there is blur to check
    wrong, _ = rerender_stack(b["aif"], b["depth"].clamp(near, far) * 1.5, b["focus_m"], test_lens, max_radius=10, per_frame_radius=True)
    assert float((b["images"] - wrong.clamp(0, 1)).abs().max()) > 1e-2  # the check can fail
    # lens-aware: rendered with the batch's own drawn lens
    cfg = _cfg(test_lens, noise=NO_NOISE, lens_sampling=_lens_sampling(), max_psf_radius=10)
    b = DeviceBatches(cfg).make(1)
    lens = LensProfile(*(float(v) for v in b["lens"][0]), name="draw")
    k = float(b["k"][0])
    x_lo, x_hi = cfg.lens_sampling.x_range
    again, _ = rerender_stack(b["aif"], b["depth"].clamp(k / x_hi, k / x_lo), b["focus_m"], lens, max_radius=10, per_frame_radius=True)
    assert torch.allclose(b["images"], again.clamp(0, 1), atol=1e-6)


def test_noise_and_vignetting_and_weak_texture(test_lens):
    clean = DeviceBatches(_cfg(test_lens, noise=NO_NOISE, augment=False)).make(5)
    noisy = DeviceBatches(_cfg(test_lens, augment=False)).make(5)
    assert torch.equal(clean["aif"], noisy["aif"])
    assert 0.002 < float((clean["images"] - noisy["images"]).std()) < 0.05
    vig = DeviceBatches(_cfg(test_lens, noise=NO_NOISE, augment=False, vignetting=0.5)).make(5)
    ratio = (vig["aif"] + 1e-3) / (clean["aif"] + 1e-3)
    assert float(ratio.max()) <= 1.0 + 1e-5 and float(ratio.min()) >= 0.5 - 1e-3
    assert float(ratio.min()) < 0.99  # some fall-off
    weak = DeviceBatches(_cfg(test_lens, noise=NO_NOISE, augment=False, weak_texture_prob=1.0)).make(5)
    assert torch.equal(weak["depth"], clean["depth"])
    def texture_contrast(aif: torch.Tensor) -> float:  # median neighbour difference: within surfaces, not at their edges
        return float(torch.diff(aif, dim=-1).abs().median())

    assert texture_contrast(weak["aif"]) < 0.4 * texture_contrast(clean["aif"])


def test_layered_batches_go_through_the_layered_renderer(test_lens, caplog):
    from model.data import render_batch_layered

    for mix, beta in (dict(disc_prob=1.0), float("inf")), (dict(psf_mix=(0.0, 0.0, 1.0), psf_beta_range=(3.0, 3.0)), 3.0):
        cfg = _cfg(test_lens, crop_hw=(16, 16), noise=NO_NOISE, psf_min_sigma_px=0.29, **mix)
        caplog.clear()
        with caplog.at_level("WARNING"):
            gen = DeviceBatches(cfg)
        assert "layered renderer" in caplog.text
        b = gen.make(0)
        near, far = cfg.working_range_m
        ref = render_batch_layered(b["aif"].permute(0, 2, 3, 1).numpy(), b["depth"][:, 0].clamp(near, far).numpy(),
                                   b["focus_m"].double().numpy(), test_lens, beta=beta, min_sigma_px=0.29)
        assert b["images"].shape == ref.shape
        assert torch.allclose(b["images"], ref, atol=1e-5)
        gauss, _ = rerender_stack(b["aif"], b["depth"].clamp(near, far), b["focus_m"], test_lens, max_radius=8)
        assert float((b["images"] - gauss.clamp(0, 1)).abs().max()) > 1e-3  # not the Gaussian renderer's


def test_photo_dir_photographs_join_the_bank(test_lens, tmp_path):
    import cv2

    from model.synth.textures import available_photos

    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"p{i}.png"), rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    gen = DeviceBatches(_cfg(test_lens, photo_dir=str(tmp_path)))
    assert len(gen.photos.names) == len(available_photos("train")) + 2
    assert gen.photos.hw[0, -1].tolist() == [70, 90]
    assert DeviceBatches(_cfg(test_lens)).photos.names == available_photos("train")


def test_breathing_is_said_to_be_ignored(test_lens, caplog):
    with caplog.at_level("WARNING"):
        DeviceBatches(_cfg(test_lens, breathing=0.2))
    assert "breathing" in caplog.text


def test_photo_bank_crops_are_the_photo_pixels():
    from model.synth.textures import available_photos, load_photo

    name = available_photos("train")[0]
    bank = PhotoBank([name], torch.device("cpu"))
    h, w = 12, 20
    p = dict(photo=np.array([0, 0]), swap=np.array([False, True]), flip_x=np.array([False, False]), flip_y=np.array([False, True]),
             x0=np.array([10.0, 7.0]), y0=np.array([20.0, 3.0]), cw=np.array([float(w), float(w)]), ch=np.array([float(h), float(h)]),
             windows=np.array([[0.0, 0.0, w, h], [0.0, 0.0, w, h]]), colour=np.array([False, False]))
    out = bank.sample(p, h, w).permute(0, 2, 3, 1).numpy()
    photo = load_photo(name)
    assert np.allclose(out[0], photo[20 : 20 + h, 10 : 10 + w], atol=2e-3)  # float16 storage
    # transposed crop (rows of the crop run along the photo's columns), flipped vertically
    assert np.allclose(out[1], photo[7 : 7 + w, 3 : 3 + h].transpose(1, 0, 2)[::-1], atol=2e-3)


def test_bad_config_type():
    with pytest.raises(TypeError, match="SynthConfig"):
        DeviceBatches({"crop_hw": (32, 32)})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the trainer


def _train_cfg(tmp_path, *extra):
    from model.config import load_config
    from model.train_config import TrainConfig

    tiny = ["width=4", "depth=2", "crop=32", "batch_size=2", "num_workers=0", "log_every=1", "val_every=2", "val_stacks=2",
            "ckpt_every=2", "image_every=2", "max_psf_radius=6", "warmup_steps=1", "data=gpu_synthetic", "device=cpu"]
    return load_config(TrainConfig, None, [f"out_dir={tmp_path / 'run'}", *tiny, *extra])


def test_trainer_gpu_synthetic_trains_and_resumes_the_stream(tmp_path):
    from model.checkpoint import read_checkpoint
    from model.trainer import Trainer

    ref = Trainer(_train_cfg(tmp_path / "ref", "steps=3"), progress=False)
    stream = ref._batches()
    third = [next(stream) for _ in range(3)][2]
    assert third["images"].device.type == "cpu" and third["images"].shape[:1] == (2,)

    tr = Trainer(_train_cfg(tmp_path, "steps=2"), progress=False)
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    tr.train()
    assert tr.step == 2
    assert any(not torch.equal(before[k], v) for k, v in tr.net.state_dict().items())
    tr2 = Trainer(_train_cfg(tmp_path, "steps=3"), progress=False)
    assert tr2.step == 2
    resumed = next(tr2._batches())
    for k in third:  # batch 3 of the resumed run is batch 3 of an uninterrupted one
        assert torch.equal(resumed[k], third[k]), k
    tr2.train()
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_on_cuda(test_lens):
    dev = torch.device("cuda")
    cfg = _cfg(test_lens, noise=NO_NOISE, crop_hw=(64, 64), batch_size=4)
    a = DeviceBatches(cfg, dev).make(1)
    b = DeviceBatches(cfg, dev).make(1)
    assert all(v.device.type == "cuda" for v in a.values())
    for k in a:
        assert torch.equal(a[k], b[k]), k
    _check_like_cpu({k: v.cpu() for k, v in a.items()}, SyntheticStacks(cfg).make(1))
    near, far = cfg.working_range_m
    again, _ = rerender_stack(a["aif"], a["depth"].clamp(near, far), a["focus_m"], test_lens, max_radius=8)
    assert torch.allclose(a["images"], again.clamp(0, 1), atol=1e-5)
    lens_aware = DeviceBatches(_cfg(test_lens, lens_sampling=_lens_sampling()), dev).make(0)
    assert lens_aware["lens"].dtype == torch.float64 and lens_aware["k"].device.type == "cuda"
