"""Write an example pair to try `llamareg register` on: the MNI152 template and a deformed copy of it.

The copy is the template under a random smooth deformation (the dev-test family, a seed of its own),
with an intensity change, re-oriented (LPS axes instead of RAS) and re-sampled to 1.5 mm: a pair whose
grids, orientations and voxel sizes differ, as users' scans do. It is synthetic, not a second subject.
With --misalign the copy is also moved through its header by a known affine (a 15 degree rotation, a
20 mm translation and a 10 % enlargement), as scans from two sessions or scanners are: a pair for
`llamareg register --affine`.

Usage:
    python data_tools/make_example_pair.py --out example
    llamareg register example/mni152.nii.gz example/deformed_copy.nii.gz \
        --moving-labels example/deformed_copy_labels.nii.gz --out example/registered
    python data_tools/make_example_pair.py --out misaligned --misalign
    llamareg register misaligned/mni152.nii.gz misaligned/deformed_copy.nii.gz --affine --out misaligned/registered
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from llamareg.data.devtest import build_devtest_subjects, devtest_template
from llamareg.data.nifti import write_nifti
from llamareg.inference.grid import Grid, resample

FILES = ("mni152.nii.gz", "mni152_labels.nii.gz", "deformed_copy.nii.gz", "deformed_copy_labels.nii.gz")
EXAMPLE_SEED = 2026


def misalignment(degrees: float = 15.0, translation_mm: float = 20.0, scale: float = 1.1) -> np.ndarray:
    """A world (RAS) transform, ``(4, 4)``: a rotation about the oblique axis (2, 2, 1), a translation of
    ``translation_mm`` along (1, 1, 1) and an isotropic scaling, about the world origin."""
    axis = np.array([2.0, 2.0, 1.0]) / 3.0
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues
    move = np.eye(4)
    move[:3, :3], move[:3, 3] = scale * rotation, translation_mm / np.sqrt(3)
    return move


def lps_grid(source_affine: np.ndarray, source_shape: tuple[int, ...], spacing: float) -> Grid:
    """A grid over the same world box with LPS axes (x and y reversed) and ``spacing`` mm voxels."""
    extent = np.abs(source_affine[:3, :3]).sum(axis=0) * np.asarray(source_shape)
    shape = tuple(int(np.ceil(side / spacing)) for side in extent)
    corner = source_affine[:3, 3] - np.abs(np.diag(source_affine[:3, :3])) / 2
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[:3, 3] = corner + np.array([extent[0] - spacing / 2, extent[1] - spacing / 2, spacing / 2])
    return Grid(shape, affine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the four NIfTI files to")
    parser.add_argument("--overwrite", action="store_true", help="replace files already there")
    parser.add_argument(
        "--misalign", action="store_true", help="move the copy by a known affine through its header (for register --affine)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file; give a folder")
    existing = [name for name in FILES if (out / name).exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"{out / existing[0]} exists; give --overwrite to replace it")
    template = devtest_template(seed=EXAMPLE_SEED)  # the same parcels as the copy's (the seed sets both)
    copy = build_devtest_subjects(2, seed=EXAMPLE_SEED)[0]
    affine = template.affine.numpy()
    write_nifti(out / FILES[0], template.image[0].numpy(), affine)
    write_nifti(out / FILES[1], template.labels[0].numpy(), affine)
    grid = lps_grid(affine, template.shape, 1.5)
    moved = misalignment() @ grid.affine if args.misalign else grid.affine  # the same voxels, placed elsewhere in the world
    write_nifti(out / FILES[2], resample(copy.image[0].numpy(), affine, grid, order=1).astype(np.float32), moved)
    write_nifti(out / FILES[3], resample(copy.labels[0].numpy(), affine, grid, order=0), moved)
    print(f"wrote {', '.join(str(out / name) for name in FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
