"""Finding subjects, labels, splits and test pairs in each dataset layout, and planning the train/val/test split."""

import json
import re

import pytest

from llamareg.data.layouts import discover, subject_key
from llamareg.data.shards.build import apply_pair_list, plan_split


def test_learn2reg(make_dataset):
    _, path = make_dataset("learn2reg")
    dataset = discover("learn2reg", path)
    assert [s.key for s in dataset.subjects] == [f"OASIS_{i:04d}_0000" for i in range(1, 7)]
    assert dataset.test_pairs == [("OASIS_0005_0000", "OASIS_0006_0000")]
    test = dataset.subjects[-1]
    assert test.split == "test" and test.labels == path.parent / "labelsTr" / "OASIS_0006_0000.nii.gz"
    assert discover("learn2reg", path.parent).test_pairs == dataset.test_pairs  # the folder holding the JSON


def test_oasis_oai_folder_and_csv(make_dataset):
    _, oasis = make_dataset("oasis")
    subjects = discover("oasis", oasis).subjects
    assert subjects[0].key == "OASIS_OAS1_0001_MR1" and subjects[0].labels.name == "aligned_seg35.nii.gz"

    _, oai = make_dataset("oai")
    knees = discover("oai", oai).subjects
    assert sorted(knees[0].label_masks) == [1, 2, 3, 4] and sorted(knees[1].label_masks) == [1, 2, 3, 4, 5]
    assert knees[1].label_masks[5].name == "patella.nii"

    _, folder = make_dataset("folder")
    cases = discover("folder", folder).subjects
    assert [s.key for s in cases] == [f"case{i}" for i in range(6)] and all(s.labelled for s in cases)

    _, csv_path = make_dataset("csv")
    listed = discover("folder", csv_path).subjects
    assert [s.split for s in listed] == ["test"] * 2 + ["val"] * 2 + ["train"] * 2
    plan = plan_split(discover("folder", csv_path))
    assert [s.key for s in plan.test] == ["case0", "case1"] and [s.key for s in plan.val] == ["case2", "case3"]
    assert [s.key for s in plan.train] == ["case4", "case5"]


def test_missing_required_mask_is_reported_when_read(make_dataset):
    _, oai = make_dataset("oai")
    (oai / "knee00" / "tibia.nii.gz").unlink()
    knee = discover("oai", oai).subjects[0]
    assert knee.label_masks[3] == oai / "knee00" / "tibia.nii.gz"  # reading it will name the missing file


def test_unlabelled_subjects_train_but_cannot_validate_or_test(make_dataset):
    _, folder = make_dataset("folder", count=7)
    (folder / "labels" / "case4.nii.gz").unlink()
    plan = plan_split(discover("folder", folder))  # case5, case6 test; validation passes over case4
    assert [s.key for s in plan.val] == ["case2", "case3"] and [s.key for s in plan.train] == ["case0", "case1", "case4"]
    assert not plan.train[-1].labelled
    (folder / "labels" / "case6.nii.gz").unlink()
    with pytest.raises(ValueError, match="test subjects case6 have no labels"):
        plan_split(discover("folder", folder))


@pytest.mark.parametrize("kind", ["folder", "csv", "learn2reg"])
def test_train_val_and_test_subjects_are_disjoint(kind, make_dataset):
    layout, path = make_dataset(kind, count=12 if kind == "folder" else 6)
    plan = plan_split(discover(layout, path))
    splits = [{s.key for s in subjects} for subjects in (plan.train, plan.val, plan.test)]
    assert sum(map(len, splits)) == len(set.union(*splits)) == len(discover(layout, path).subjects)
    assert all(len(keys) >= 2 for keys in splits)
    if kind == "folder":  # 12 subjects: the last 2 keys (in string order) held out for test, then 10 % of the other 10 for validation
        assert [s.key for s in plan.test] == ["case8", "case9"] and [s.key for s in plan.val] == ["case6", "case7"]
    if kind == "learn2reg":  # registration_val is the test set; validation comes from the training subjects
        assert plan.test_pairs == [("OASIS_0005_0000", "OASIS_0006_0000")]
        assert {s.key for s in plan.test} == {"OASIS_0005_0000", "OASIS_0006_0000"}
        assert [s.key for s in plan.val] == ["OASIS_0003_0000", "OASIS_0004_0000"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"test_subjects": 5}, "--test-subjects must be between 2 and 4 for 8 subjects (2 to validate and 2 to train must remain), got 5"),
        ({"test_subjects": 1}, "--test-subjects must be between 2 and 4"),
        ({"val_subjects": 5}, "--val-subjects must be between 2 and 4 for 6 training subjects (6 labelled; 2 must remain to train), got 5"),
        ({"test_subjects": 4, "val_subjects": 3}, "--val-subjects must be between 2 and 2 for 4 training subjects"),
        ({"num_val_pairs": 3}, "--num-val-pairs must be between 1 and 2 for 2 validation subjects, got 3"),
        ({"num_test_pairs": 0}, "--num-test-pairs must be between 1 and 2 for 2 test subjects, got 0"),
    ],
)
def test_split_options_that_do_not_fit_name_the_option(options, message, make_dataset):
    _, folder = make_dataset("folder", count=8)
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_split(discover("folder", folder), **options)


def test_too_few_subjects_for_three_roles(make_dataset):
    _, folder = make_dataset("folder", count=5)
    with pytest.raises(
        ValueError,
        match=r"^5 subjects are too few to hold out 2 test subjects \(--test-subjects\) and keep 2 to validate "
        r"and 2 to train; add subjects$",
    ):
        plan_split(discover("folder", folder))


def test_pair_list_marks_test_subjects(make_dataset, tmp_path):
    _, folder = make_dataset("folder")
    pairs = tmp_path / "pairs.json"
    pairs.write_text(
        json.dumps(
            [
                {
                    "fixed": str(folder / "images" / "case2.nii.gz"),
                    "moving": "folder/images/case3.nii.gz",
                    "fixed_labels": "x",
                    "moving_labels": "y",
                }
            ]
        )
    )
    dataset = apply_pair_list(discover("folder", folder), pairs)
    assert dataset.test_pairs == [("case3", "case2")]
    assert [s.key for s in dataset.subjects if s.split == "test"] == ["case2", "case3"]
    with pytest.raises(ValueError, match="--test-subjects/--num-test-pairs apply only to datasets without their own test pairs"):
        plan_split(dataset, test_subjects=2)
    pairs.write_text(
        json.dumps([{"fixed": "elsewhere.nii.gz", "moving": "folder/images/case3.nii.gz", "fixed_labels": "x", "moving_labels": "y"}])
    )
    with pytest.raises(ValueError, match="elsewhere.nii.gz, which is not an image of the dataset"):
        apply_pair_list(discover("folder", folder), pairs)


def test_layout_errors(make_dataset, tmp_path):
    with pytest.raises(ValueError, match="--layout must be one of"):
        discover("dicom", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover("oasis", tmp_path / "absent")
    with pytest.raises(ValueError, match="no sub-folder with aligned_norm.nii.gz"):
        discover("oasis", tmp_path)
    with pytest.raises(FileNotFoundError, match="must be a CSV file or a folder holding images/"):
        discover("folder", tmp_path)
    _, folder = make_dataset("folder", count=1)
    with pytest.raises(ValueError, match="holds 1 subject"):
        discover("folder", folder)
    clash = tmp_path / "clash.csv"
    clash.write_text("image,key\na.nii.gz,s1\nb.nii.gz,s1\n")
    with pytest.raises(ValueError, match="both make subject key 's1'"):
        discover("folder", clash)
    assert subject_key("sub-01.ses 2.nii") == "sub-01_ses_2"
