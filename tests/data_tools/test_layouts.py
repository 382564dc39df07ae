"""Finding subjects, labels, splits and evaluation pairs in each dataset layout."""

import json

import pytest

from llamareg.data.layouts import discover, subject_key
from llamareg.data.shards.build import apply_pair_list, plan_split


def test_learn2reg(make_dataset):
    _, path = make_dataset("learn2reg")
    dataset = discover("learn2reg", path)
    assert [s.key for s in dataset.subjects] == [f"OASIS_{i:04d}_0000" for i in range(1, 7)]
    assert dataset.eval_pairs == [("OASIS_0005_0000", "OASIS_0006_0000")]
    validation = dataset.subjects[-1]
    assert validation.split == "val" and validation.labels == path.parent / "labelsTr" / "OASIS_0006_0000.nii.gz"
    assert discover("learn2reg", path.parent).eval_pairs == dataset.eval_pairs  # the folder holding the JSON


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
    assert [s.split for s in listed] == ["train"] * 4 + ["val"] * 2
    plan = plan_split(discover("folder", csv_path))
    assert [s.key for s in plan.val] == ["case4", "case5"] and len(plan.train) == 4


def test_missing_required_mask_is_reported_when_read(make_dataset):
    _, oai = make_dataset("oai")
    (oai / "knee00" / "tibia.nii.gz").unlink()
    knee = discover("oai", oai).subjects[0]
    assert knee.label_masks[3] == oai / "knee00" / "tibia.nii.gz"  # reading it will name the missing file


def test_unlabelled_subjects_train_but_cannot_validate(make_dataset):
    _, folder = make_dataset("folder")
    (folder / "labels" / "case0.nii.gz").unlink()
    plan = plan_split(discover("folder", folder))
    assert plan.train[0].key == "case0" and not plan.train[0].labelled
    (folder / "labels" / "case5.nii.gz").unlink()
    with pytest.raises(ValueError, match="validation subjects case5 have no labels"):
        plan_split(discover("folder", folder))


def test_pair_list_marks_validation_subjects(make_dataset, tmp_path):
    _, folder = make_dataset("folder")
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{"fixed": str(folder / "images" / "case2.nii.gz"), "moving": "folder/images/case3.nii.gz",
                                  "fixed_labels": "x", "moving_labels": "y"}]))
    dataset = apply_pair_list(discover("folder", folder), pairs)
    assert dataset.eval_pairs == [("case3", "case2")]
    assert [s.key for s in dataset.subjects if s.split == "val"] == ["case2", "case3"]
    pairs.write_text(json.dumps([{"fixed": "elsewhere.nii.gz", "moving": "folder/images/case3.nii.gz", "fixed_labels": "x",
                                  "moving_labels": "y"}]))
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
