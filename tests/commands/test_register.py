"""``llamareg register`` on NIfTI files whose orientation, size and spacing differ from training."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from llamareg.cli import main
from llamareg.evaluation.pair_metrics import voxel_displacement
from llamareg.inference.grid import Grid, sample_world, world_box
from llamareg.inference.images import normalise_intensities
from llamareg.data.pair_list import read_pair_list
from llamareg.inference.pair_files import check_pair, load_pair
from llamareg.inference.refine import pair_objective
from llamareg.inference.registration import grid_of, register_pair
from llamareg.losses.regularization import diffusion
from llamareg.metrics import folding_percentage

pytestmark = pytest.mark.slow


def _load(path):
    return nibabel.load(path)


def _voxels(image):
    return np.asarray(image.dataobj)


def test_batch_outputs_sit_on_the_fixed_grid_and_beat_identity(trained_checkpoint, trained_model, nifti_pairs, fixed_space, tmp_path):
    out = tmp_path / "out"
    assert main(["register", "--checkpoint", str(trained_checkpoint), "--pairs", str(nifti_pairs.pairs_json), "--out", str(out)]) == 0
    spacing = trained_model.config.data.spacing_mm
    before, after = [], []
    for index, entry in enumerate(nifti_pairs.entries):
        folder = out / f"{entry['fixed'].removesuffix('.nii.gz')}__{entry['moving'].removesuffix('.nii.gz')}"
        assert json.loads((folder / "registration.json").read_text())["pair_index"] == index
        fixed = _load(nifti_pairs.folder / entry["fixed"])
        moving = _load(nifti_pairs.folder / entry["moving"])
        moving_labels = _load(nifti_pairs.folder / entry["moving_labels"])
        fixed_labels = _voxels(_load(nifti_pairs.folder / entry["fixed_labels"]))
        warped, warped_labels, field = (_load(folder / name) for name in ("warped.nii.gz", "warped_labels.nii.gz", "displacement.nii.gz"))
        assert fixed.shape != moving.shape or not np.allclose(fixed.affine, moving.affine)  # pairs cross grids
        for image in (warped, warped_labels, field):
            np.testing.assert_array_equal(image.affine, fixed.affine)
            assert image.shape[:3] == fixed.shape
        assert field.shape == (*fixed.shape, 3)
        displacement = field.get_fdata()
        assert 1.0 < np.abs(displacement).max() < 30.0  # mm: the model moved something, plausibly
        before.append(fixed_space.mean_dice(fixed_space.labels(moving_labels, fixed), fixed_labels))
        after.append(fixed_space.mean_dice(_voxels(warped_labels), fixed_labels))
        # The written field, applied as documented (moving point = p + u(p), world RAS mm), reproduces the outputs.
        reproduced = fixed_space.sample(moving, fixed, displacement, order=1)
        np.testing.assert_allclose(reproduced, warped.get_fdata(), atol=1e-3 * np.ptp(reproduced))
        agreement = np.mean(fixed_space.labels(moving_labels, fixed, displacement) == _voxels(warped_labels))
        assert agreement > 0.999
        record = json.loads((folder / "registration.json").read_text())
        # The training voxel size over the fixed image's box, each side rounded to the nearest multiple of 16 voxels.
        low, high = world_box(Grid(fixed.shape, fixed.affine))
        voxels = np.ceil((high - low) / spacing - 1e-6)
        assert record["model_grid"]["shape"] == [int(16 * max(1, np.floor(v / 16 + 0.5))) for v in voxels]
        assert record["model_grid"]["spacing_mm"] == spacing and record["refine"] is None
    assert len(after) == 8
    assert np.mean(after) > np.mean(before) + 0.005, (before, after)


def test_console_script_single_pair_with_itk_field_and_refinement(trained_checkpoint, nifti_pairs, tmp_path):
    entry = nifti_pairs.entries[1]
    out = tmp_path / "single"
    script = shutil.which("llamareg", path=str(Path(sys.executable).parent))
    assert script, "the llamareg console script is not installed in this environment"
    folder = nifti_pairs.folder
    result = subprocess.run(
        [
            script,
            "register",
            "--checkpoint",
            str(trained_checkpoint),
            str(folder / entry["fixed"]),
            str(folder / entry["moving"]),
            "--moving-labels",
            str(folder / entry["moving_labels"]),
            "--out",
            str(out),
            "--itk",
            "--refine",
            "5",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    fixed = _load(folder / entry["fixed"])
    itk = _load(out / "displacement_itk.nii.gz")
    ras = _load(out / "displacement.nii.gz").get_fdata()
    assert itk.shape == (*fixed.shape, 1, 3)
    assert itk.header["intent_code"] == 1007 and itk.header.get_intent()[0] == "vector"
    assert itk.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(itk.affine, fixed.affine)
    np.testing.assert_allclose(itk.get_fdata()[:, :, :, 0, :], ras * np.array([-1.0, -1.0, 1.0]))  # LPS
    assert sorted(p.name for p in out.iterdir()) == [
        "displacement.nii.gz",
        "displacement_itk.nii.gz",
        "registration.json",
        "warped.nii.gz",
        "warped_labels.nii.gz",
    ]
    record = json.loads((out / "registration.json").read_text())["refine"]
    assert record["steps"] == 5 and record["seconds"] > 0
    # Voxels of 2.6 mm or more: twice that is coarser than the 3.25 mm model grid, so one level, at the fixed grid.
    [level] = record["levels"]
    assert level["shape"] == list(fixed.shape) and level["steps"] == 5 and level["loss_after"] < level["loss_before"]


def test_refinement_starts_from_the_network_field_on_the_fixed_grid_and_lowers_its_loss(trained_model, nifti_pairs):
    pair = read_pair_list(nifti_pairs.pairs_json)[2]
    loaded = load_pair(pair, check_pair(pair))
    network = register_pair(trained_model, loaded.fixed, loaded.moving)
    refined = register_pair(trained_model, loaded.fixed, loaded.moving, refine_steps=15)
    objective = pair_objective(trained_model.config)
    fixed_grid = grid_of(loaded.fixed)

    def loss(displacement):
        """The objective on the fixed grid, by scipy: normalised moving at p + u(p), u in fixed voxels."""
        moving = normalise_intensities(loaded.moving.data)
        warped = sample_world(moving, loaded.moving.affine, fixed_grid.world_points() + displacement, order=1)
        voxels = displacement @ np.linalg.inv(fixed_grid.affine[:3, :3]).T
        field = torch.from_numpy(np.moveaxis(voxels, -1, 0)[None].astype(np.float32))
        tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
        similarity = objective.similarity(tensor(warped), tensor(normalise_intensities(loaded.fixed.data)))
        return similarity.item() + objective.reg_weight * diffusion(field).item()

    [level] = refined.refinement.levels  # fixed voxels of 2.6 mm or more: one level, the fixed grid
    assert level.shape == loaded.fixed.shape and level.steps == 15
    assert level.loss_before == pytest.approx(loss(network.displacement), rel=1e-3)
    assert level.loss_after == pytest.approx(loss(refined.displacement), rel=1e-3)
    assert level.loss_after < level.loss_before - 0.01 * abs(level.loss_before)
    torch.testing.assert_close(refined.grid_flow, network.grid_flow)  # the same network field underneath
    # Fine voxels under a weak lambda (0.02 in the fixture's run) fold a little more than the network's field.
    assert folding_percentage(voxel_displacement(refined.displacement, loaded.fixed.affine)).item() < 2.0
