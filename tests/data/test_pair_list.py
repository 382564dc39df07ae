"""Pair lists: structure errors name the file and entry; relative paths resolve against the JSON's folder."""

import json

import pytest

from llamareg.data.pair_list import PAIR_KEYS, read_pair_list

FULL = {"fixed": "a.nii.gz", "moving": "b.nii.gz", "fixed_labels": "a_l.nii.gz", "moving_labels": "b_l.nii.gz"}


def _write(tmp_path, content):
    path = tmp_path / "lists" / "pairs.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_relative_paths_resolve_against_the_json_folder(tmp_path):
    path = _write(tmp_path, [FULL, {"fixed": "/data/f.nii", "moving": "m.nii"}])
    pairs = read_pair_list(path)
    assert pairs[0].moving_labels == tmp_path / "lists" / "b_l.nii.gz"
    assert str(pairs[1].fixed) == "/data/f.nii" and pairs[1].fixed_labels is None


@pytest.mark.parametrize(
    "content, words",
    [
        ("[{", "not valid JSON"),
        ({"fixed": "a"}, "non-empty JSON list"),
        ([], "non-empty JSON list"),
        (["a.nii"], "entry 0"),
        ([FULL, {**FULL, "fixd": "x"}], "entry 1 has unknown key 'fixd'"),
        ([{"fixed": "a.nii", "moving": 3}], "'moving' must be a file path"),
    ],
)
def test_structure_errors(tmp_path, content, words):
    with pytest.raises(ValueError) as error:
        read_pair_list(_write(tmp_path, content))
    assert words in str(error.value) and "pairs.json" in str(error.value) and "\n" not in str(error.value)


def test_required_keys(tmp_path):
    path = _write(tmp_path, [{"fixed": "a.nii", "moving": "b.nii"}])
    with pytest.raises(ValueError, match="entry 0 lacks 'fixed_labels'"):
        read_pair_list(path, required=PAIR_KEYS)


def test_missing_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_pair_list(tmp_path / "absent.json")
