"""model.jsonfile: one reader for the package's JSON/text files, errors naming the file."""

from __future__ import annotations

import pytest

from export.metadata import MetadataError
from model.errors import FormatError
from model.jsonfile import read_json_object, read_text_file


def test_reads_an_object(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"x": 1, "y": [2, 3]}', encoding="utf-8")
    assert read_json_object(p) == {"x": 1, "y": [2, 3]}


@pytest.mark.parametrize("text, problem", [
    ('{"x": 1,', r"not valid JSON \(.* at line 1\)"),
    ("[1, 2]", "expected a JSON object, got list"),
    ("", r"not valid JSON"),
])
def test_malformed_names_file_and_problem(tmp_path, text, problem):
    p = tmp_path / "bad.json"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=rf"bad\.json: {problem}") as e:
        read_json_object(p)
    assert e.value.path == str(p)


def test_missing_and_folder_and_binary(tmp_path):
    with pytest.raises(FormatError, match=r"nope\.json: cannot read: No such file"):
        read_json_object(tmp_path / "nope.json")
    with pytest.raises(FormatError, match="cannot read"):
        read_text_file(tmp_path)  # a folder
    b = tmp_path / "b.json"
    b.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(FormatError, match=r"b\.json: cannot read: not UTF-8 text"):
        read_json_object(b)


def test_error_type_is_kept(tmp_path):
    p = tmp_path / "side.json"
    p.write_text("[]", encoding="utf-8")
    with pytest.raises(MetadataError, match="expected a JSON object"):
        read_json_object(p, MetadataError)
