"""The dev-test set: anatomy no model here trains or validates on, scored on fine parcels.

Subjects are the MNI152 template (shipped with nilearn) under random smooth deformations and
intensity changes from a seed stream of their own, at 2 mm. This is *synthetic deformations of a
template the model never saw*, not inter-subject registration: it tells whether a network trained on
synthetic shapes matches real brain images, and it is never used to choose a checkpoint.

Two tissue labels barely move Dice, so grey and white matter are cut into fixed-seed parcels
(nearest of randomly placed seed voxels within each tissue): about 100 labels of a few cm each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from llamareg.atomic import write_json
from llamareg.data.mni152 import load_mni152
from llamareg.data.nifti import write_nifti
from llamareg.data.pair_datasets import consecutive_pairs
from llamareg.data.synthetic import random_intensity, random_smooth_displacement, seeded_generator
from llamareg.data.volume import Volume
from llamareg.spatial.functional import warp

DEVTEST_SHAPE = (80, 96, 80)
DEVTEST_SPACING_MM = 2.0
DEVTEST_PARCELS_PER_TISSUE = 50
DEVTEST_MAX_DISPLACEMENT_MM = 12.0
DEVTEST_CONTROL_SPACING_MM = 32.0


def parcellate(tissue: np.ndarray, parcels_per_label: int, seed: int) -> np.ndarray:
    """Cut every label of ``tissue`` into ``parcels_per_label`` parcels around random seed voxels.

    Args:
        tissue: ``(D, H, W)`` integer labels, 0 background.
        parcels_per_label: parcels per label (>= 1).
        seed: seed of the seed voxels.

    Returns:
        ``(D, H, W)`` int64 parcels: label ``k`` (in sorted order of the non-zero labels, from 0) owns
        parcels ``k * parcels_per_label + 1 .. (k + 1) * parcels_per_label``.

    Example:
        >>> tissue = np.zeros((8, 8, 8), dtype=np.int64); tissue[:4] = 1; tissue[4:] = 2
        >>> sorted(np.unique(parcellate(tissue, 2, seed=0)).tolist())
        [1, 2, 3, 4]
    """
    if parcels_per_label < 1:
        raise ValueError(f"parcels_per_label must be >= 1, got {parcels_per_label}")
    parcels = np.zeros(tissue.shape, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for index, label in enumerate(sorted(int(v) for v in np.unique(tissue) if v != 0)):
        voxels = np.argwhere(tissue == label)
        if len(voxels) < parcels_per_label:
            raise ValueError(f"label {label} has {len(voxels)} voxels, fewer than {parcels_per_label} parcels")
        seeds = voxels[rng.choice(len(voxels), parcels_per_label, replace=False)]
        _, nearest = cKDTree(seeds).query(voxels)
        parcels[tuple(voxels.T)] = index * parcels_per_label + 1 + nearest
    return parcels


def devtest_template(
    shape: Sequence[int] = DEVTEST_SHAPE,
    spacing_mm: float = DEVTEST_SPACING_MM,
    parcels_per_tissue: int = DEVTEST_PARCELS_PER_TISSUE,
    seed: int = 0,
) -> Volume:
    """The MNI152 template at ``spacing_mm`` with its grey/white-matter parcels as labels."""
    template = load_mni152(shape, spacing_mm)
    parcels = parcellate(template.labels[0].numpy(), parcels_per_tissue, seed)
    return Volume(template.image, torch.from_numpy(parcels)[None], template.affine, "mni152-parcels")


def build_devtest_subjects(
    num_subjects: int,
    seed: int = 0,
    shape: Sequence[int] = DEVTEST_SHAPE,
    spacing_mm: float = DEVTEST_SPACING_MM,
    max_displacement_mm: float = DEVTEST_MAX_DISPLACEMENT_MM,
    control_spacing_mm: float = DEVTEST_CONTROL_SPACING_MM,
) -> list[Volume]:
    """Dev-test subjects: the parcellated template under deformations from the ``devtest`` seed stream.

    Subject ``k`` is a pure function of ``(seed, k)`` and the geometry arguments.

    Example:
        >>> subjects = build_devtest_subjects(2, shape=(48, 64, 48), spacing_mm=3.25)  # doctest: +SKIP
    """
    if num_subjects < 2:
        raise ValueError(f"num_subjects must be >= 2 (a pair needs two), got {num_subjects}")
    template = devtest_template(shape, spacing_mm, seed=seed)
    control_spacing = max(2, round(control_spacing_mm / spacing_mm))
    subjects = []
    for index in range(num_subjects):
        generator = seeded_generator("devtest", seed, index)
        flow = random_smooth_displacement(template.shape, max_displacement_mm / spacing_mm, control_spacing, generator)
        image = warp(template.image[None], flow, padding_mode="border")[0]
        labels = warp(template.labels[None], flow, mode="nearest", padding_mode="border")[0]
        image = random_intensity(image, generator)
        subjects.append(Volume(image, labels, template.affine.clone(), f"devtest-{index:03d}"))
    return subjects


def write_devtest(folder: str | Path, num_pairs: int, seed: int = 0, **geometry) -> Path:
    """Write dev-test subjects as NIfTI and a ``pairs.json`` that ``llamareg evaluate`` reads.

    ``num_pairs`` pairs over ``num_pairs`` subjects, each subject moving once and fixed once
    (:func:`~llamareg.data.pair_datasets.consecutive_pairs`). The pair list and a ``devtest.json`` describing
    the set are written last.

    Returns:
        The path of ``pairs.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    subjects = build_devtest_subjects(max(num_pairs, 2), seed, **geometry)
    paths = []
    for subject in subjects:
        affine = subject.affine.numpy()
        image, labels = f"{subject.name}_image.nii.gz", f"{subject.name}_labels.nii.gz"
        write_nifti(folder / image, subject.image[0].numpy(), affine)
        write_nifti(folder / labels, subject.labels[0].numpy(), affine)
        paths.append((image, labels))
    pairs = [
        {"moving": paths[m][0], "moving_labels": paths[m][1], "fixed": paths[f][0], "fixed_labels": paths[f][1]}
        for m, f in consecutive_pairs(len(subjects), num_pairs)
    ]
    write_json(
        folder / "devtest.json",
        {
            "what": "MNI152 under random smooth deformations and intensity changes (seed stream 'devtest'); "
            "synthetic deformations of a template no model trained or validated on, not inter-subject registration",
            "seed": seed,
            "subjects": len(subjects),
            "pairs": len(pairs),
            "labels": "grey/white-matter parcels (fixed seed)",
            **{key: value for key, value in geometry.items()},
        },
    )
    write_json(folder / "pairs.json", pairs)
    return folder / "pairs.json"
