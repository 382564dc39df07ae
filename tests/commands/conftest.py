"""Inputs of the command tests.

* ``trained_checkpoint`` / ``trained_model``: a trained cpu-template checkpoint (the shared
  ``trained_run`` of ``tests/conftest.py``); ``nifti_pairs``: the
  template preset's validation pairs as NIfTI files of other orientations, sizes and spacings.
* ``checkpoints`` / ``images``: untrained tiny checkpoints and small images, valid and broken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import nibabel
import numpy as np
import pytest
import torch
from scipy import ndimage

from llamareg.config import load_config
from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.pair_datasets import consecutive_pairs
from llamareg.inference.model_io import load_trained_model
from llamareg.models import build_model
from llamareg.training.checkpoint import save_checkpoint, trainable_state


@pytest.fixture(scope="session")
def trained_checkpoint(trained_run) -> Path:
    """``best.pt`` of the shared short cpu-template run (see ``tests/conftest.py``)."""
    return trained_run.checkpoint


@pytest.fixture(scope="session")
def trained_model(trained_checkpoint):
    """The fixture checkpoint loaded for library-level calls (CPU)."""
    return load_trained_model(trained_checkpoint, device="cpu")


TINY = [
    "data.shape=[32, 32, 32]",
    "model.base_channels=4",
    "model.adapter_width=32",
    "model.inner_adapter_width=32",
    "llm.source=random:smollm2-135m",
    "tracking.enabled=false",
]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Untrained tiny checkpoints: LLaMA-Reg (valid.pt), a VoxelMorph baseline (voxelmorph.pt), LLaMA-Reg
    weights under a config of another architecture (other_architecture.pt); and a foreign .pt."""
    folder = tmp_path_factory.mktemp("checkpoints")
    config = load_config("cpu-default", TINY)
    torch.manual_seed(0)
    model = build_model(config)
    payload = {
        "config": config.to_dict(),
        "model": trainable_state(model),
        "llm_source": model.llm.source,
        "llm_fingerprint": model.llm.fingerprint,
    }
    save_checkpoint(payload, folder / "valid.pt")
    swapped = json.loads(json.dumps(payload["config"]))
    swapped["model"]["base_channels"] = 8  # weights of a C=4 model under a C=8 config
    save_checkpoint({**payload, "config": swapped}, folder / "other_architecture.pt")
    torch.save({"state_dict": {"weight": torch.zeros(3)}}, folder / "foreign.pt")
    baseline = load_config("cpu-default", [*TINY, "model.architecture=voxelmorph", "train.scale_weights=[1.0]"])
    save_checkpoint(
        {"config": baseline.to_dict(), "model": trainable_state(build_model(baseline)), "llm_source": None, "llm_fingerprint": None},
        folder / "voxelmorph.pt",
    )
    return folder


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Small valid NIfTI images and labels, and broken variants."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])

    def save(name, data):
        nibabel.save(nibabel.Nifti1Image(data, affine), folder / name)

    for name in ("fixed", "moving"):
        save(f"{name}.nii.gz", rng.random((20, 24, 18)).astype(np.float32))
        save(f"{name}_labels.nii.gz", rng.integers(0, 3, (20, 24, 18)).astype(np.uint8))
    save("flat2d.nii.gz", rng.random((20, 24)).astype(np.float32))
    save("series4d.nii.gz", rng.random((20, 24, 18, 3)).astype(np.float32))
    save("short_labels.nii.gz", rng.integers(0, 3, (20, 24, 17)).astype(np.uint8))
    (folder / "notes.nii.gz").write_text("not an image")
    (folder / "truncated.nii.gz").write_bytes((folder / "moving.nii.gz").read_bytes()[:3000])
    return folder


@dataclass(frozen=True)
class NiftiPairs:
    """The validation pairs written as NIfTI: ``entries`` as in a pair list (file names in ``folder``)."""

    folder: Path
    pairs_json: Path
    entries: list[dict[str, str]]


# Two grids unlike the training grid (RAS, 3.25 mm, 48x64x48) over the same world box: even-numbered
# subjects are stored with axes (S, P, L) at 2.6 mm, odd ones with axes (L, A, I) at (3.0, 2.8, 3.6) mm.
# Columns of DIRECTIONS[k] are the world directions of the stored array's axes.
DIRECTIONS = (np.array([[0, 0, -1], [0, -1, 0], [1, 0, 0]], float), np.array([[-1, 0, 0], [0, 1, 0], [0, 0, -1]], float))
SPACINGS = (np.array([2.6, 2.6, 2.6]), np.array([3.0, 2.8, 3.6]))


def reoriented_affine(source_affine: np.ndarray, source_shape, directions: np.ndarray, spacing: np.ndarray):
    """Affine and shape of a grid with the given axis directions and spacing over the source's world box."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in source_shape], indexing="ij")).reshape(3, -1)
    world = source_affine[:3, :3] @ corners + source_affine[:3, 3:4]
    low, high = world.min(axis=1), world.max(axis=1)
    axes = directions @ np.diag(spacing)
    shape = tuple(int(round(abs(directions[:, k] @ (high - low)) / spacing[k])) for k in range(3))
    # The first voxel's centre: at the box's low end of each axis that runs positive, the high end otherwise.
    start = np.where(directions.sum(axis=1) > 0, low, high)
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = start + axes @ np.full(3, 0.5)
    return affine, shape


def _resample(data, source_affine, affine, shape, order):
    target_to_source = np.linalg.inv(source_affine) @ affine
    return ndimage.affine_transform(
        data, target_to_source[:3, :3], target_to_source[:3, 3], output_shape=shape, order=order, mode="constant"
    )


@pytest.fixture(scope="session")
def nifti_pairs(tmp_path_factory) -> NiftiPairs:
    """The validation pairs of the shared run's preset (cpu-template), each subject written on a grid of
    another orientation and size."""
    config = load_config("cpu-template")  # the preset of the shared run (tests/conftest.py TRAINED_PRESET)
    data = config.data
    _, subjects = build_embedded_volumes(
        shape=tuple(data.shape),
        num_train=2,
        num_val=data.num_val_subjects,
        seed=data.seed,
        max_displacement=data.max_displacement,
        control_spacing=data.control_spacing,
        spacing_mm=data.spacing_mm,
    )  # subject k of a split does not depend on the number of training subjects
    folder = tmp_path_factory.mktemp("nifti_pairs")
    for index, subject in enumerate(subjects):
        source_affine = subject.affine.numpy()
        affine, shape = reoriented_affine(source_affine, subject.shape, DIRECTIONS[index % 2], SPACINGS[index % 2])
        image = _resample(subject.image[0].numpy(), source_affine, affine, shape, order=1) * 800.0 + 50.0  # scanner-like units
        labels = _resample(subject.labels[0].numpy(), source_affine, affine, shape, order=0).astype(np.uint8)
        nibabel.save(nibabel.Nifti1Image(image.astype(np.float32), affine), folder / f"subject{index}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(labels, affine), folder / f"subject{index}_labels.nii.gz")
    entries = [
        {
            "fixed": f"subject{f}.nii.gz",
            "moving": f"subject{m}.nii.gz",
            "fixed_labels": f"subject{f}_labels.nii.gz",
            "moving_labels": f"subject{m}_labels.nii.gz",
        }
        for m, f in consecutive_pairs(len(subjects), data.num_val_pairs)
    ]
    pairs_json = folder / "pairs.json"
    pairs_json.write_text(json.dumps(entries, indent=1))
    return NiftiPairs(folder, pairs_json, entries)


@pytest.fixture(scope="session")
def fixed_space():
    """Helpers that resample and score in the fixed image's space with scipy/numpy alone."""
    return SimpleNamespace(labels=labels_in_fixed_space, sample=sample_in_fixed_space, mean_dice=mean_dice)


def labels_in_fixed_space(
    moving_labels: nibabel.Nifti1Image, fixed: nibabel.Nifti1Image, displacement: np.ndarray | None = None
) -> np.ndarray:
    """Moving labels sampled (nearest) at the fixed voxels' world points p (+ u(p)), by scipy alone."""
    return sample_in_fixed_space(moving_labels, fixed, displacement, order=0).astype(np.int64)


def sample_in_fixed_space(
    moving: nibabel.Nifti1Image, fixed: nibabel.Nifti1Image, displacement: np.ndarray | None, order: int
) -> np.ndarray:
    """``moving`` sampled at the fixed voxels' world points moved by ``displacement`` (RAS mm), scipy only."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in fixed.shape[:3]], indexing="ij"), axis=-1)
    world = index @ fixed.affine[:3, :3].T + fixed.affine[:3, 3]
    if displacement is not None:
        world = world + displacement
    voxels = (world - moving.affine[:3, 3]) @ np.linalg.inv(moving.affine[:3, :3]).T
    data = np.asarray(moving.dataobj, dtype=np.float64)
    return ndimage.map_coordinates(data, np.moveaxis(voxels, -1, 0), order=order, mode="grid-constant", cval=data.min() if order else 0)


def mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the foreground labels of ``b`` (numpy, independent of llamareg.metrics)."""
    scores = [2 * np.sum((a == label) & (b == label)) / (np.sum(a == label) + np.sum(b == label)) for label in np.unique(b) if label]
    return float(np.mean(scores))
