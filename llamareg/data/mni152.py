"""The MNI152 2009 template shipped inside nilearn's wheel, as a small labelled :class:`Volume`.

nilearn is installed with ``pip install --no-deps nilearn`` only for its data folder: it is never
imported (its dependencies are absent), the files are located through the import system and read
with nibabel.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import nibabel
import numpy as np
import torch
from scipy import ndimage

from llamareg.checks import check_shape
from llamareg.data.volume import Volume

LABEL_NAMES = {1: "grey matter", 2: "white matter"}
MNI152_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# The brain (GM + WM) spans 143 x 180 x 154 mm: at 2.5 mm it fits (64, 80, 64) with a few voxels to spare.
DEFAULT_SPACING_MM = 2.5
INSTALL_HINT = "pip install --no-deps nilearn"


def nilearn_data_dir() -> Path:
    """Folder of the data files inside the installed nilearn package (without importing nilearn).

    Raises:
        FileNotFoundError: if nilearn is not installed or its MNI152 files are missing.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the MNI152 template comes with nilearn, which is not installed; run `{INSTALL_HINT}`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [name for name in MNI152_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; reinstall nilearn with `{INSTALL_HINT}`")
    return folder


def _output_affine(source_affine: np.ndarray, centre_world: np.ndarray, shape: tuple[int, ...], spacing: float) -> np.ndarray:
    """Affine of a grid with the source's axis directions, isotropic ``spacing`` and its centre at ``centre_world``."""
    directions = source_affine[:3, :3] / np.linalg.norm(source_affine[:3, :3], axis=0)
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    affine[:3, 3] = centre_world - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def _resample(data: np.ndarray, source_affine: np.ndarray, target_affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resampling onto the target grid, low-pass filtered first so that downsampling does not alias."""
    source_spacing = np.linalg.norm(source_affine[:3, :3], axis=0)
    target_spacing = np.linalg.norm(target_affine[:3, :3], axis=0)
    # Same rule as skimage's anti-aliasing: sigma = (factor - 1) / 2 source voxels.
    sigma = np.maximum((target_spacing / source_spacing - 1) / 2, 0)
    smoothed = ndimage.gaussian_filter(data, sigma)
    target_to_source = np.linalg.inv(source_affine) @ target_affine
    return ndimage.affine_transform(
        smoothed, target_to_source[:3, :3], target_to_source[:3, 3], output_shape=shape, order=1, mode="constant", cval=0.0
    )


def load_mni152(
    shape: Sequence[int] = (64, 80, 64),
    spacing_mm: float = DEFAULT_SPACING_MM,
    tissue_threshold: float = 0.5,
    clip_percentile: float = 99.5,
) -> Volume:
    """The MNI152 2009c T1 template with grey/white matter labels, resampled and centred on the brain.

    The template is resampled to isotropic ``spacing_mm``, centred on the bounding box of the brain and
    cropped or zero-padded to ``shape``. Intensities are divided by the ``clip_percentile`` of the
    voxels inside the head and clipped to ``[0, 1]``. A voxel is labelled with the more probable of
    grey matter (1) and white matter (2) when that probability reaches ``tissue_threshold``; all else
    (background, CSF) is 0.

    Args:
        shape: output ``(D, H, W)`` along the template's (x, y, z) axes; each divisible by 16.
        spacing_mm: isotropic voxel size; the default fits the whole brain in the default shape.
        tissue_threshold: minimal GM or WM probability for a tissue label, in ``(0, 1]``.
        clip_percentile: upper intensity percentile mapped to 1, in ``(0, 100]``.

    Returns:
        A :class:`Volume` named ``"mni152"`` whose affine maps voxels to MNI millimetres.

    Raises:
        ValueError: for a bad shape or option.
        FileNotFoundError: if nilearn (which ships the template) is not installed.

    Example:
        >>> template = load_mni152()
        >>> template.shape, template.affine.diagonal()[:3].tolist()
        ((64, 80, 64), [2.5, 2.5, 2.5])
    """
    shape = check_shape(shape, "shape", multiple=16, hint=" (the network halves it 4 times)")
    if not spacing_mm > 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    if not 0 < tissue_threshold <= 1:
        raise ValueError(f"tissue_threshold must lie in (0, 1], got {tissue_threshold}")
    if not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must lie in (0, 100], got {clip_percentile}")

    folder = nilearn_data_dir()
    images = {key: nibabel.load(folder / name) for key, name in MNI152_FILES.items()}
    source_affine = images["t1"].affine
    # The files are uint8; scale to [0, 1] (for GM/WM that makes them probabilities).
    arrays = {key: np.asarray(image.dataobj, dtype=np.float32) / 255.0 for key, image in images.items()}

    brain = np.argwhere(arrays["gm"] + arrays["wm"] >= 0.5)
    centre_index = (brain.min(axis=0) + brain.max(axis=0)) / 2
    centre_world = source_affine[:3, :3] @ centre_index + source_affine[:3, 3]
    target_affine = _output_affine(source_affine, centre_world, shape, spacing_mm)
    resampled = {key: _resample(array, source_affine, target_affine, shape) for key, array in arrays.items()}

    t1 = resampled["t1"]
    upper = np.percentile(t1[t1 > 0], clip_percentile)
    image = np.clip(t1 / upper, 0.0, 1.0)

    tissue = np.stack([resampled["gm"], resampled["wm"]])
    labels = np.where(tissue.max(axis=0) >= tissue_threshold, tissue.argmax(axis=0) + 1, 0)

    return Volume(
        image=torch.from_numpy(image.astype(np.float32))[None],
        labels=torch.from_numpy(labels.astype(np.int64))[None],
        affine=torch.from_numpy(target_affine),
        name="mni152",
    )
