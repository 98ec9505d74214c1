"""The wizard, scripted: what it refuses and how it talks (answers files, stdin, resume, usage errors)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calibration.wizard import main
from model.lens import LensProfile

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SIM = ["--camera", "chart-sim", "--sim-size", "400x225", "--frames", "9"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_answers_file_refuses_duplicates_and_out_of_focus_captures(tmp_path, capsys):
    answers = tmp_path / "answers.txt"
    # check bar 200 mm; 0.3 m; 0.31 m (a near-duplicate); 1.2 m (focus crossing at the end of the
    # sweep); 6 m (chart too small to find); 0.6 m; then finish
    answers.write_text("200\n0.3\n0.31\n1.2\n6\n0.6\n\n")
    session = tmp_path / "s"
    code, out, err = _run(SIM + ["--answers", str(answers), "--out", str(session)], capsys)
    assert code == 0, err
    assert "refused: 0.31 m is too close to the 0.3 m already captured" in out
    assert "capture refused: the sweep never passes through focus" in out
    assert "cannot use this view: chart not found" in out
    assert "Put the chart at about" in out and "far inf |" in out
    assert "one more distance is needed" in out
    assert sorted(p.name for p in session.iterdir() if p.is_dir()) == ["d0.300m", "d0.600m"]
    assert (session / "lens.json").is_file()


def test_check_bar_corrects_the_chart_scale(tmp_path, capsys):
    answers = tmp_path / "answers.txt"
    answers.write_text("198\n")  # then the answers run out: nothing captured
    code, out, err = _run(SIM + ["--answers", str(answers), "--out", str(tmp_path / "s")], capsys)
    assert code == 2
    assert "nothing was captured" in err or "cannot fit" in err
    chart = json.loads((tmp_path / "s" / "chart.json").read_text())
    assert chart["print_scale"] == pytest.approx(0.99)


def test_one_distance_is_refused_with_advice(tmp_path, capsys):
    code, out, err = _run(SIM + ["--non-interactive", "--distances", "0.4", "--out", str(tmp_path / "s")], capsys)
    assert code == 2
    assert err.startswith("error: cannot fit the lens: 1 usable distance (0.4 m)")
    assert "Capture next: the chart at about" in err
    assert (tmp_path / "s" / "d0.400m" / "stack.json").is_file()  # what was captured is kept
    # ... and the session can be resumed with the distance it asked for
    code, out, err = _run(SIM + ["--non-interactive", "--distances", "0.25", "--resume", "--out", str(tmp_path / "s")], capsys)
    assert code == 0, err
    assert "resuming: 1 distance(s) already captured: 0.4 m" in out
    assert LensProfile.load(tmp_path / "s" / "lens.json").fit["distances_m"] == [0.25, 0.4]


def test_over_exposed_chart_is_refused(tmp_path, capsys):
    code, out, err = _run(SIM + ["--non-interactive", "--distances", "0.4", "0.8", "--sim-white", "2.0",
                                 "--out", str(tmp_path / "s")], capsys)
    assert code == 2
    assert out.count("cannot use this view: over-exposed") == 2
    assert "nothing was captured" in err


def test_usage_errors(tmp_path, capsys):
    code, _, err = _run(SIM + ["--non-interactive", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "--non-interactive needs --distances" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, _, err = _run(SIM + ["--non-interactive", "--distances", "0.4", "0.8", "--out", str(tmp_path / "full")], capsys)
    assert code == 2 and "exists and is not empty" in err
    code, _, err = _run(SIM + ["--non-interactive", "--distances", "0.4", "0.8", "--preset", "nope", "--out", str(tmp_path / "p")], capsys)
    assert code == 2 and "unknown preset 'nope'" in err


def test_answers_on_stdin_and_quitting(tmp_path):
    """A person (or a pipe) typing: the check bar, then 'q' quits before anything is captured."""
    proc = subprocess.run([sys.executable, "-m", "calibration.wizard", *SIM, "--out", str(tmp_path / "s")],
                          input="200\nq\n", capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)  # a hang guard, not a speed limit
    assert proc.returncode == 1, proc.stderr
    assert "its length in mm [200]:" in proc.stdout and "quitting" in proc.stdout
    assert (tmp_path / "s" / "chart.json").is_file() and (tmp_path / "s" / "session.json").is_file()
