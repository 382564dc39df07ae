"""Any llamareg checkpoint registers: a tiny LLaMA-Reg one and a baseline's (untrained, so only the plumbing counts)."""

import json

import nibabel
import numpy as np
import pytest

from llamareg.cli import main


@pytest.mark.parametrize("checkpoint", ["valid.pt", "voxelmorph.pt"])
def test_register_and_evaluate_run_with_the_checkpoint(capsys, checkpoints, images, tmp_path, checkpoint):
    out = tmp_path / "registered"
    argv = [
        "register",
        "--checkpoint",
        checkpoints / checkpoint,
        images / "fixed.nii.gz",
        images / "moving.nii.gz",
        "--moving-labels",
        images / "moving_labels.nii.gz",
        "--out",
        out,
    ]
    assert main([str(a) for a in argv]) == 0
    fixed = nibabel.load(images / "fixed.nii.gz")
    warped_labels = nibabel.load(out / "warped_labels.nii.gz")
    assert warped_labels.shape == fixed.shape and np.array_equal(warped_labels.affine, fixed.affine)
    # The 40 x 48 x 36 mm images at the 3.25 mm training spacing: 12.3 x 14.8 x 11.1 voxels, 16^3 (not the 32^3 training shape).
    grid = json.loads((out / "registration.json").read_text())["model_grid"]
    assert grid["shape"] == [16, 16, 16] and grid["spacing_mm"] == 3.25
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{key: str(images / f"{key}.nii.gz") for key in ("fixed", "moving", "fixed_labels", "moving_labels")}]))
    assert (
        main(["evaluate", "--checkpoint", str(checkpoints / checkpoint), "--pairs", str(pairs), "--out", str(tmp_path / "evaluated")]) == 0
    )
    assert "| LLaMA-Reg |" in (tmp_path / "evaluated" / "summary.md").read_text()
