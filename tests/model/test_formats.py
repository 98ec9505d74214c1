import json
import os

import numpy as np
import pytest

from model.errors import FormatError
from model.formats import FocalStack, find_stacks, read_image, read_stack, write_image, write_stack


def test_write_read_roundtrip_sorted(tmp_path, small_stack):
    st = small_stack
    # shuffle order on disk: the reader sorts by focus distance
    perm = [3, 0, 4, 1, 2]
    shuffled = FocalStack(images=st.images[perm], focus_m=st.focus_m[perm], lens=st.lens, depth=st.depth, aif=st.aif)
    out = write_stack(tmp_path / "s1", shuffled, bit_depth=16)
    back = read_stack(out)
    np.testing.assert_allclose(back.focus_m, sorted(st.focus_m))
    np.testing.assert_allclose(back.images, st.images, atol=1 / 65535)
    assert np.isnan(back.depth[0, 0]) and np.allclose(back.depth[1:], st.depth[1:])
    assert back.aif is not None and back.lens.focal_length_m == st.lens.focal_length_m
    assert find_stacks(tmp_path) == [out]


def test_refuses_overwrite_and_leaves_no_temp(tmp_path, small_stack):
    write_stack(tmp_path / "s", small_stack)
    with pytest.raises(FileExistsError):
        write_stack(tmp_path / "s", small_stack)
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_interrupted_write_leaves_nothing(tmp_path, small_stack, monkeypatch):
    import model.formats as fmt

    calls = {"n": 0}
    real = fmt.encode_png

    def boom(img, bit_depth=8):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(img, bit_depth)

    monkeypatch.setattr(fmt, "encode_png", boom)
    with pytest.raises(OSError):
        write_stack(tmp_path / "s", small_stack)
    assert os.listdir(tmp_path) == []


def _write_meta(folder, meta):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stack.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "mutate,key",
    [
        (lambda m: m.update(format="focal-stack/9"), "format"),
        (lambda m: m.pop("lens"), "lens"),
        (lambda m: m["frames"][1].update(focus_distance_m=-1), "frames[1].focus_distance_m"),
        (lambda m: m["frames"][0].update(focus_distance_m=float("inf")), "frames[0].focus_distance_m"),
        (lambda m: m["frames"][0].pop("file"), "frames[0].file"),
        (lambda m: m["lens"].update(f_number=0), "lens.f_number"),
        (lambda m: m["frames"][2].update(file="nope.png"), "frames[2].file"),
    ],
)
def test_bad_stack_json_names_file_and_key(tmp_path, small_stack, mutate, key):
    folder = write_stack(tmp_path / "s", small_stack)
    meta = json.loads((folder / "stack.json").read_text())
    mutate(meta)
    (folder / "stack.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError) as e:
        read_stack(folder)
    assert key in str(e.value) and str(folder) in str(e.value)


def test_mismatched_frame_sizes_and_unreadable_image(tmp_path, small_stack):
    folder = write_stack(tmp_path / "s", small_stack)
    write_image(folder / "frame_01.png", np.zeros((10, 10, 3), np.float32))
    with pytest.raises(FormatError, match="differs"):
        read_stack(folder)
    (folder / "frame_01.png").write_bytes(b"not a png")
    with pytest.raises(FormatError, match="unreadable image"):
        read_stack(folder)


def test_calibration_capture_without_focus_distance(tmp_path, small_stack):
    st = FocalStack(images=small_stack.images, focus_m=None, lens=small_stack.lens,
                    focus_control=np.array([3.0, 1.0, 2.0, 5.0, 4.0]), target={"distance_m": 0.4, "chart": "chart.json"})
    folder = write_stack(tmp_path / "c", st)
    with pytest.raises(FormatError, match="focus_distance_m: missing"):
        read_stack(folder)
    back = read_stack(folder, require_focus=False)
    assert back.focus_m is None and back.focus_control.tolist() == [1, 2, 3, 4, 5]
    assert back.target["distance_m"] == 0.4


def test_lens_profile_reference(tmp_path, small_stack):
    small_stack.lens.save(tmp_path / "lens.json")
    folder = write_stack(tmp_path / "s", small_stack, lens_profile_ref="../lens.json")
    assert read_stack(folder).lens == small_stack.lens
    (tmp_path / "lens.json").unlink()
    with pytest.raises(FormatError, match="lens.json"):
        read_stack(folder)


def test_gray_and_8bit_images(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 5), 255, np.uint8))
    img = read_image(tmp_path / "g.png")
    assert img.shape == (4, 5, 3) and img.max() == 1.0


def test_find_stacks_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_stacks(tmp_path / "nothing")


def test_atomic_files_get_normal_permissions(tmp_path, small_stack):
    from model.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "x.txt", "hi")
        folder = write_stack(tmp_path / "s", small_stack)
    finally:
        os.umask(old)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o755)
    assert oct((folder / "stack.json").stat().st_mode & 0o777) == oct(0o644)
