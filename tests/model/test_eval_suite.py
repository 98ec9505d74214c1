"""Scoring the evaluation suite in shards and merging them (model.eval_suite score --shard, merge)."""

from __future__ import annotations

import json
import shutil

import pytest

from model.cli import run_cli
from model.eval_suite import main, make_suite, merge_scores, parse_shard


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    """Five stacks of the tuning split (reference lens: far, mid, near, weak, slanted)."""
    root = tmp_path_factory.mktemp("suite")
    make_suite(root / "all", "tune", per_family=1, progress=False)
    keep = root / "five"
    keep.mkdir()
    for fam in ("far", "mid", "near", "weak", "slanted"):
        shutil.copytree(root / "all" / f"ref-50mm-f8_{fam}_0", keep / f"ref-50mm-f8_{fam}_0")
    return keep


def test_shards_cover_the_suite_once_and_merge_to_the_single_run(small_suite, tmp_path, capsys):
    assert main(["score", "--data", str(small_suite), "--json", str(tmp_path / "all.json")]) == 0
    assert main(["score", "--data", str(small_suite), "--shard", "0/2", "--json", str(tmp_path / "a.json")]) == 0
    assert main(["score", "--data", str(small_suite), "--shard", "1/2", "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert [r["stack"] for r in a["per_stack"]] == ["ref-50mm-f8_far_0", "ref-50mm-f8_near_0", "ref-50mm-f8_weak_0"]
    assert [r["stack"] for r in b["per_stack"]] == ["ref-50mm-f8_mid_0", "ref-50mm-f8_slanted_0"]
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "m.json")]) == 0
    assert "family weak" in capsys.readouterr().out
    whole, merged = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("all", "m"))
    assert merged["per_stack"] == whole["per_stack"]
    for k in ("d1", "abs_rel", "stacks"):
        assert merged["overall"]["model"][k] == pytest.approx(whole["overall"]["model"][k], rel=1e-12)
        assert merged["groups"]["family far"]["model"][k] == pytest.approx(whole["groups"]["family far"]["model"][k])
    assert merged["overall"]["model"]["stacks"] == 5 and merged["overall"]["model"]["d1"] != a["overall"]["model"]["d1"]


def test_bad_shards_and_overlapping_parts_are_clear_errors(small_suite, tmp_path, capsys):
    assert parse_shard("1/3") == (1, 3)
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(SystemExit) as e:  # one line, exit 2, nothing written
        run_cli(lambda: main(["score", "--data", str(small_suite), "--shard", "3/2", "--json", str(tmp_path / "x.json")]))
    assert e.value.code == 2 and "--shard 3/2" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit) as e:  # more shards than stacks
        run_cli(lambda: main(["score", "--data", str(small_suite), "--shard", "6/7"]))
    assert e.value.code == 2 and "shard 6/7 is empty" in capsys.readouterr().err
    row = {"stack": "ref-50mm-f8_far_0", "model": {"d1": 1.0, "abs_rel": 0.0, "pixels": 1.0}}
    with pytest.raises(ValueError, match="in both"):
        merge_scores([{"per_stack": [row]}, {"per_stack": [row]}])
    with pytest.raises(ValueError, match="no 'per_stack'"):
        merge_scores([{"overall": {}}], ["old.json"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: main(["merge", str(tmp_path / "bad.json")]))
    assert e.value.code == 2 and "bad.json" in capsys.readouterr().err
