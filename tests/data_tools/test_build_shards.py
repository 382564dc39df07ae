"""build_shards.py end to end on tiny datasets of every layout: read-back, manifest, train/val/test splits, pair lists, bad inputs."""

import json
import logging

import nibabel
import numpy as np
import pytest
import torch

from llamareg.data.layouts import discover
from llamareg.data.nifti import read_label_map, read_subject
from llamareg.data.preprocess import Preprocessing, preprocess_subject
from llamareg.data.pair_list import read_pair_list
from llamareg.data.shards import ShardSet
from llamareg.data.shards.manifest import file_digest


@pytest.mark.parametrize("kind", ["learn2reg", "oasis", "oai", "folder", "csv"])
def test_shards_read_back_as_preprocessed(kind, make_dataset, build_shards_cli, tmp_path):
    layout, source = make_dataset(kind)
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shard-mb", "0.05"]) == 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "llamareg-shards" and manifest["layout"] == layout
    assert manifest["shape"] == [32, 32, 32]  # smallest multiple of 16 holding 20-21 x 22 x 18 voxels
    assert manifest["spacing_mm"] == [1.5, 1.5, 1.5]
    assert manifest["counts"]["subjects"] == 6 and manifest["counts"]["skipped"] == 0
    counts = manifest["counts"]
    assert counts["train"] + counts["val"] + counts["test"] == 6 and min(counts["train"], counts["val"], counts["test"]) >= 2
    assert manifest["counts"]["shards"] == len(manifest["shards"]) >= 2
    for entry in manifest["shards"]:
        assert file_digest(out / entry["name"]) == (entry["bytes"], entry["sha256"])
    assert sum(entry["samples"] for entry in manifest["shards"]) == 6

    shards = ShardSet(out)
    stored = shards.load(subject["key"] for subject in manifest["subjects"])
    options = Preprocessing(shape=(32, 32, 32))
    for record in discover(layout, source).subjects:
        volume = stored[record.key]
        image, labels, affine = preprocess_subject(*read_subject(record.image, record.labels, record.label_masks), options)
        assert torch.equal(volume.image[0], torch.from_numpy(image)), record.key
        assert torch.equal(volume.labels[0], torch.from_numpy(labels)), record.key
        assert torch.equal(volume.affine, torch.from_numpy(affine)), record.key
        # Reoriented to RAS: the diagonal is positive, 1.5 mm.
        assert np.allclose(np.diag(affine)[:3], 1.5)
    expected_ids = [0, 1, 2, 3, 5] if layout == "oai" else [0, 1, 2, 3]
    assert manifest["label_ids"] == expected_ids

    assert manifest["pairs"] == {"val": "val_pairs.json", "test": "test_pairs.json"}
    splits = {split: {s["key"] for s in manifest["subjects"] if s["split"] == split} for split in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"] or splits["val"] & splits["test"])
    assert {entry["split"] for entry in manifest["shards"]} == {"train", "val", "test"}
    for entry in manifest["shards"]:
        assert entry["name"].startswith(f"{entry['split']}-") and set(entry["keys"]) <= splits[entry["split"]]
    for role in ("val", "test"):
        pairs = read_pair_list(out / f"{role}_pairs.json")
        assert len(pairs) == counts[f"{role}_pairs"] >= 1
        assert {key for pair in shards.pairs(role) for key in pair} <= splits[role]  # each role's pairs stay among its subjects
        for pair in pairs:
            assert all(path.is_file() for path in (pair.fixed, pair.moving, pair.fixed_labels, pair.moving_labels))
            assert read_label_map(pair.fixed_labels)[0].max() >= 1


def test_learn2reg_registration_val_is_the_test_set(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("learn2reg")
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]) == 0
    summary = capsys.readouterr().out
    assert f"validation: 2 pairs in {out / 'val_pairs.json'} (training validates on them)" in summary
    assert f"test: 1 pairs in {out / 'test_pairs.json'} (report them: llamareg evaluate" in summary
    shards = ShardSet(out)
    assert shards.pairs("test") == [("OASIS_0005_0000", "OASIS_0006_0000")]
    # Validation subjects come from the 'training' list: none of registration_val chooses a checkpoint.
    assert shards.keys("val") == ["OASIS_0003_0000", "OASIS_0004_0000"]
    assert shards.pairs("val") == [("OASIS_0003_0000", "OASIS_0004_0000"), ("OASIS_0004_0000", "OASIS_0003_0000")]
    written = json.loads((out / "test_pairs.json").read_text())
    assert written == [
        {
            "fixed": str(source.parent / "imagesTr" / "OASIS_0006_0000.nii.gz"),
            "moving": str(source.parent / "imagesTr" / "OASIS_0005_0000.nii.gz"),
            "fixed_labels": str(source.parent / "labelsTr" / "OASIS_0006_0000.nii.gz"),
            "moving_labels": str(source.parent / "labelsTr" / "OASIS_0005_0000.nii.gz"),
        }
    ]
    splits = {s["key"]: s["split"] for s in json.loads((out / "manifest.json").read_text())["subjects"]}
    assert [key for key, split in splits.items() if split == "test"] == ["OASIS_0005_0000", "OASIS_0006_0000"]
    assert [key for key, split in splits.items() if split == "train"] == ["OASIS_0001_0000", "OASIS_0002_0000"]


def test_oai_masks_merge_and_eval_labels_are_written(make_dataset, build_shards_cli, tmp_path, tools):
    layout, source = make_dataset("oai")
    out = tmp_path / "shards"
    assert (
        build_shards_cli(
            ["--layout", layout, "--input", str(source), "--out", str(out), "--orientation", "none", "--clip-percentiles", "0", "100"]
        )
        == 0
    )
    assert read_pair_list(out / "val_pairs.json")[0].fixed_labels.parent == out / "labels"
    pair = read_pair_list(out / "test_pairs.json")[0]
    assert pair.fixed_labels.parent == out / "labels"  # merged masks, one file per validation and test knee
    knee = pair.fixed.parent
    _, labels = tools.subject_arrays(20 + int(knee.name[-2:]))
    merged, affine = read_label_map(pair.fixed_labels)
    expected = labels.astype(np.int64)
    if (knee / "patella.nii").is_file():
        expected[:2, :2, :2] = 5
    assert np.array_equal(merged, expected) and np.allclose(affine, tools.lps_affine)


def test_preprocessing_options_are_applied(make_dataset, build_shards_cli, tmp_path):
    layout, source = make_dataset("folder")
    table = tmp_path / "labels.json"
    table.write_text(json.dumps({"1": 1, "3": 2}))
    out = tmp_path / "shards"
    args = [
        "--layout",
        layout,
        "--input",
        str(source),
        "--out",
        str(out),
        "--spacing",
        "3",
        "--shape",
        "16",
        "16",
        "16",
        "--label-map",
        str(table),
        "--test-subjects",
        "2",
        "--num-test-pairs",
        "2",
        "--val-subjects",
        "2",
        "--num-val-pairs",
        "1",
        "--clip-percentiles",
        "1",
        "99",
    ]
    assert build_shards_cli(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shape"] == [16, 16, 16] and manifest["spacing_mm"] == [3.0, 3.0, 3.0]
    assert manifest["label_ids"] == [0, 1, 2]  # 2 dropped, 3 -> 2
    assert manifest["preprocessing"] == {
        "orientation": "RAS",
        "spacing_mm": [3.0, 3.0, 3.0],
        "shape": [16, 16, 16],
        "clip_percentiles": [1.0, 99.0],
        "label_map": {"1": 1, "3": 2},
    }
    assert [s["key"] for s in manifest["subjects"] if s["split"] == "test"] == ["case4", "case5"]  # the last keys held out
    assert [s["key"] for s in manifest["subjects"] if s["split"] == "val"] == ["case2", "case3"]  # then the last training keys
    assert ShardSet(out).pairs("test") == [("case4", "case5"), ("case5", "case4")]
    assert ShardSet(out).pairs("val") == [("case2", "case3")]


def test_csv_split_column_decides_the_three_roles(make_dataset, build_shards_cli, tmp_path):
    layout, source = make_dataset("csv")
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]) == 0
    shards = ShardSet(out)
    assert [shards.keys(split) for split in ("train", "val", "test")] == [["case4", "case5"], ["case2", "case3"], ["case0", "case1"]]
    assert shards.pairs("val") == [("case2", "case3"), ("case3", "case2")]
    assert shards.pairs("test") == [("case0", "case1"), ("case1", "case0")]
    with pytest.raises(ValueError, match="pair role must be one of val, test, got 'train'"):
        shards.pairs("train")


def test_test_pairs_option_replaces_the_test_split(make_dataset, build_shards_cli, tmp_path):
    layout, source = make_dataset("folder")
    pair_list = tmp_path / "pairs.json"
    pair_list.write_text(
        json.dumps(
            [
                {
                    "fixed": "folder/images/case0.nii.gz",
                    "moving": "folder/images/case1.nii.gz",
                    "fixed_labels": "folder/labels/case0.nii.gz",
                    "moving_labels": "folder/labels/case1.nii.gz",
                }
            ]
        )
    )
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--test-pairs", str(pair_list)]) == 0
    assert ShardSet(out).pairs("test") == [("case1", "case0")]
    assert ShardSet(out).keys("test") == ["case0", "case1"]
    assert ShardSet(out).keys("val") == ["case4", "case5"]  # set aside from the others


def test_corrupt_nifti_stops_the_build_naming_it(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("oasis", count=7)  # 6 once the bad one is removed: 2 per role
    bad = source / "OASIS_OAS1_0002_MR1" / "aligned_norm.nii.gz"
    bad.write_bytes(bad.read_bytes()[:400])  # header intact, data cut off
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]) == 2
    error = capsys.readouterr().err
    assert f"error: {bad} is not a readable NIfTI file" in error and "--skip-bad" in error
    assert not out.exists()  # the failed build removed what it had written, the folder it made too
    bad.unlink()
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]) == 0


def test_a_failed_build_in_an_existing_folder_leaves_only_what_was_there(make_dataset, build_shards_cli, tmp_path):
    layout, source = make_dataset("folder")
    out = tmp_path / "shards"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    # case4 (a test subject) is read after the training and validation subjects have been written to shards
    (source / "images" / "case4.nii.gz").write_bytes((source / "images" / "case4.nii.gz").read_bytes()[:400])
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]) == 2
    assert sorted(p.name for p in out.rglob("*")) == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        ShardSet(out)


def test_a_missing_label_file_is_an_error_unless_skipped(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("folder", count=7)
    missing = source / "labels" / "case1.nii.gz"
    missing.unlink()  # case1 is one of the 3 training subjects; the others have labels
    out = tmp_path / "shards"
    args = ["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]
    assert build_shards_cli(args) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error == f"error: {source / 'images' / 'case1.nii.gz'} has no label map, though other subjects have one; add it, "
        "or pass --skip-bad to leave the subject out"
    )
    assert not out.exists()
    assert build_shards_cli([*args, "--skip-bad"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 1 and "case1" not in {s["key"] for s in manifest["subjects"]}


def test_too_few_training_subjects_left_after_skipping_is_an_error_leaving_nothing(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("folder")
    (source / "labels" / "case1.nii.gz").unlink()  # one of the 2 training subjects
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32", "--skip-bad"]) == 2
    assert "error: only 1 training subject(s) were stored; training pairs need at least 2" in capsys.readouterr().err
    assert not out.exists()


def test_a_2d_image_and_an_out_that_is_a_file_are_one_line_errors(make_dataset, build_shards_cli, tmp_path, capsys, tools):
    layout, source = make_dataset("folder")
    flat = source / "images" / "case2.nii.gz"
    tools.save(flat, np.zeros((20, 22), np.float32))
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(tmp_path / "s")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: {flat} has shape (20, 22), not a 3D volume; give 3D images (2D slices are not registered)"
    (tmp_path / "file").write_text("x")
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(tmp_path / "file"), "--shape", "32", "32", "32"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path / 'file'} is a file; give a folder for the shards"


def test_skip_bad_skips_corrupt_and_nan_inputs_with_a_count(make_dataset, build_shards_cli, tmp_path, caplog, tools):
    layout, source = make_dataset("oasis", count=9)  # 2 test, 2 validation and 5 training subjects
    corrupt = source / "OASIS_OAS1_0002_MR1" / "aligned_norm.nii.gz"
    corrupt.write_bytes(b"not a nifti file at all")
    image, _ = tools.subject_arrays(0)
    nan = source / "OASIS_OAS1_0003_MR1" / "aligned_norm.nii.gz"
    tools.save(nan, np.where(image > 250, np.nan, image.astype(np.float32)))
    out = tmp_path / "shards"
    with caplog.at_level(logging.INFO):
        assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--skip-bad"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 2 and manifest["counts"]["subjects"] == 7
    assert [entry["input"] for entry in manifest["skipped"]] == [str(corrupt), str(nan)]
    assert "NaN" in manifest["skipped"][1]["reason"]
    assert f"skipped 2 bad input(s): {corrupt}, {nan}" in caplog.text
    assert "OASIS_OAS1_0002_MR1" not in {s["key"] for s in manifest["subjects"]}


@pytest.mark.parametrize("problem", ["nan", "shape", "affine", "missing-label"])
def test_invalid_subject_is_a_clear_error(problem, make_dataset, build_shards_cli, tmp_path, capsys, tools):
    layout, source = make_dataset("folder")
    image_path, label_path = source / "images" / "case3.nii.gz", source / "labels" / "case3.nii.gz"
    image, labels = tools.subject_arrays(33)
    if problem == "nan":
        tools.save(image_path, np.where(labels == 1, np.nan, image.astype(np.float32)))
        expected = f"{image_path} holds"
    elif problem == "shape":
        tools.save(label_path, labels[:-1])
        expected = f"{label_path} has shape (19, 22, 18) but its image {image_path} has (20, 22, 18)"
    elif problem == "affine":
        tools.save(label_path, labels, tools.lps_affine * 2)
        expected = f"{label_path} and its image {image_path} have different affines"
    else:
        (source / "labels" / "case5.nii.gz").unlink()  # case5 is held out for testing, which needs labels
        expected = "test subjects case5 have no labels"
    out = tmp_path / "shards"
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]) == 2
    assert expected in capsys.readouterr().err


def test_existing_output_needs_overwrite(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("folder")
    out = tmp_path / "shards"
    args = ["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]
    assert build_shards_cli(args) == 0
    (out / "notes.txt").write_text("mine")
    assert build_shards_cli(args) == 2
    assert "already holds shards; pass --overwrite" in capsys.readouterr().err
    assert build_shards_cli([*args, "--shard-mb", "0.05", "--overwrite"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(entry["name"] for entry in manifest["shards"])
    assert (out / "notes.txt").read_text() == "mine"  # only the build's own files are replaced


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "30", "32", "32"], "--shape must be three positive sizes divisible by 16"),
        (["--orientation", "RAX"], "--orientation must be three axis codes"),
        (["--clip-percentiles", "99", "1"], "--clip-percentiles must satisfy"),
        (["--spacing", "1", "2"], "--spacing takes one or three values"),
        (["--test-subjects", "9"], "--test-subjects must be between 2 and 2 for 6 subjects"),
        (["--val-subjects", "3"], "--val-subjects must be between 2 and 2 for 4 training subjects"),
        (["--num-val-pairs", "3"], "--num-val-pairs must be between 1 and 2 for 2 validation subjects, got 3"),
        (["--num-test-pairs", "0"], "--num-test-pairs must be between 1 and 2 for 2 test subjects, got 0"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("folder")
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(tmp_path / "s"), *args]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_split_options_that_do_not_apply_are_one_line_errors(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("learn2reg")
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(tmp_path / "s"), "--test-subjects", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: --test-subjects/--num-test-pairs apply only to datasets without their own test pairs; "
        "this one has them (learn2reg registration_val or --test-pairs)"
    )
    layout, source = make_dataset("csv")
    assert build_shards_cli(["--layout", layout, "--input", str(source), "--out", str(tmp_path / "s"), "--val-subjects", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --val-subjects cannot be combined with a dataset whose split column marks validation subjects"
    )
    assert build_shards_cli(["--layout", "embedded", "--out", str(tmp_path / "e"), "--num-val-pairs", "2"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --num-val-pairs applies to dataset layouts; --layout embedded takes")
    assert not (tmp_path / "s").exists() and not (tmp_path / "e").exists()


def test_a_format_1_folder_is_refused_and_replaced_with_overwrite(make_dataset, build_shards_cli, tmp_path, capsys):
    layout, source = make_dataset("folder")
    out = tmp_path / "shards"
    args = ["--layout", layout, "--input", str(source), "--out", str(out), "--shape", "32", "32", "32"]
    assert build_shards_cli(args) == 0
    # What the code before the three roles left: version 1 and a single eval_pairs.json over the held-out subjects.
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    (out / "eval_pairs.json").write_text((out / "test_pairs.json").read_text())
    (out / "test_pairs.json").unlink()
    with pytest.raises(ValueError, match="has format version 1, this llamareg reads 2; rebuild the shards with data_tools/build_shards.py"):
        ShardSet(out)
    assert build_shards_cli(args) == 2
    assert "already holds shards; pass --overwrite" in capsys.readouterr().err
    assert build_shards_cli([*args, "--overwrite"]) == 0
    assert not (out / "eval_pairs.json").exists() and ShardSet(out).manifest["version"] == 2


def test_align_to_puts_every_subject_on_the_reference_grid(build_shards_cli, tools, tmp_path):
    """Six copies of one subject moved through their headers (rotations about S, shifts): aligned to the
    unmoved copy, every validation and test volume matches it; the pair lists name the aligned files."""
    image, labels = tools.subject_arrays(0, shape=(24, 24, 20))
    reference = tools.save(tmp_path / "reference.nii.gz", image)
    for index in range(6):
        angle = np.radians(6.0 * (index - 2.5))
        move = np.eye(4)
        move[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        move[:3, 3] = [1.5 * (index - 2.5), -1.0 * (index - 2.5), 0.5]
        tools.save(tmp_path / "data" / "images" / f"case{index}.nii.gz", image, move @ tools.lps_affine)
        tools.save(tmp_path / "data" / "labels" / f"case{index}.nii.gz", labels, move @ tools.lps_affine)
    out = tmp_path / "shards"
    assert (
        build_shards_cli(
            [
                "--layout",
                "folder",
                "--input",
                str(tmp_path / "data"),
                "--out",
                str(out),
                "--shape",
                "32",
                "32",
                "32",
                "--align-to",
                str(reference),
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["align_to"] == {"reference": str(reference.resolve()), "rigid": False}
    assert all("prealignment" in subject for subject in manifest["subjects"])
    held_out = [entry for name in ("val_pairs.json", "test_pairs.json") for entry in json.loads((out / name).read_text())]
    assert held_out and all(entry[key].startswith("aligned/") for entry in held_out for key in ("fixed", "fixed_labels"))
    for entry in held_out:
        for key in ("fixed", "moving"):
            aligned = nibabel.load(out / entry[f"{key}_labels"])
            np.testing.assert_allclose(aligned.affine, tools.lps_affine, atol=1e-5)
            found = np.asarray(aligned.dataobj)
            assert np.mean([2 * np.sum((found == k) & (labels == k)) / (np.sum(found == k) + np.sum(labels == k)) for k in (1, 2, 3)]) > 0.9
    assert build_shards_cli(["--layout", "folder", "--input", str(tmp_path / "data"), "--out", str(tmp_path / "rigid"), "--rigid"]) == 2
