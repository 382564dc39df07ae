"""``llamareg warp``: apply a saved registration to another image or label map."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel
import numpy as np

from llamareg.atomic import check_out_folder
from llamareg.inference.images import NiftiVolume, open_volume, read_intensities, read_labels
from llamareg.inference.itk import read_displacement, read_itk_affine
from llamareg.inference.outputs import nifti_like, save_nifti
from llamareg.inference.registration import grid_of
from llamareg.inference.transforms import SavedTransform, warp_volume

DESCRIPTION = "Apply a saved registration (displacement and/or affine) to an image or label map."
EPILOG = """\
Forward (default): IMAGE lies on the moving image's grid (or anywhere in its world space) and is resampled
onto the fixed grid: the grid of the displacement field, or --reference. Each output voxel p takes IMAGE at
T(p + u(p)) (ANTs' order for `-t displacement -t affine`): llamareg's displacement.nii.gz already includes
any --affine pre-alignment, so `--registration DIR` uses it alone.

--inverse goes the other way: IMAGE lies on the fixed grid and is resampled onto the moving image's grid
(--reference, default the moving image named in DIR/registration.json), each voxel q taking IMAGE at the p
with T(p + u(p)) = q (the field inverted by fixed-point iteration).

Transforms: --registration DIR (a `llamareg register` output folder), or --displacement FILE (llamareg's
(X, Y, Z, 3) RAS mm, or an ITK/ANTs (X, Y, Z, 1, 3) LPS displacement image) and/or --affine FILE (an ITK
text transform such as affine.txt or ANTs' after `ConvertTransformFile 3 0GenericAffine.mat affine.txt`).
Intensities are interpolated linearly (the image's minimum outside it); --labels takes the nearest voxel
(background 0 outside) and writes int32.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="image or label map (NIfTI) to warp")
    parser.add_argument("--out", required=True, help="output file (.nii or .nii.gz)")
    parser.add_argument("--registration", metavar="DIR", help="a `llamareg register` output folder (its displacement.nii.gz)")
    parser.add_argument("--displacement", metavar="FILE", help="a displacement image: llamareg's or ITK/ANTs'")
    parser.add_argument("--affine", metavar="FILE", help="an ITK text affine transform, applied after the displacement")
    parser.add_argument(
        "--reference",
        metavar="FILE",
        help="the image whose grid the output takes (default: the fixed "
        "grid of the displacement; with --inverse, the moving image of the registration)",
    )
    parser.add_argument("--labels", action="store_true", help="IMAGE is a label map: nearest neighbour, int32 output")
    parser.add_argument("--inverse", action="store_true", help="map an image on the fixed grid onto the moving grid")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _transform(args: argparse.Namespace) -> tuple[SavedTransform, Path | None, Path | None]:
    """The transform, the file whose grid is the fixed one, and the moving image the registration names."""
    if args.registration and (args.displacement or args.affine):
        raise ValueError("give --registration DIR, or --displacement and/or --affine, not both")
    moving_named = None
    displacement_path = Path(args.displacement) if args.displacement else None
    if args.registration:
        folder = Path(args.registration)
        displacement_path = folder / "displacement.nii.gz"
        if not displacement_path.is_file():
            raise FileNotFoundError(f"--registration {folder} holds no displacement.nii.gz; give a `llamareg register` output folder")
        record = folder / "registration.json"
        if record.is_file():
            moving_named = Path(json.loads(record.read_text())["moving"])
    if displacement_path is None and not args.affine:
        raise ValueError("give a transform: --registration DIR, --displacement FILE and/or --affine FILE")
    displacement, grid = (
        read_displacement(displacement_path, "--registration" if args.registration else "--displacement")
        if displacement_path
        else (None, None)
    )
    affine = read_itk_affine(args.affine) if args.affine else None
    return SavedTransform(displacement, grid, affine), displacement_path, moving_named


def _reference(path: Path, role: str) -> NiftiVolume:
    """A grid and header to write on (the voxels are not read)."""
    image = open_volume(path, role) if role != "displacement" else nibabel.load(path)
    return NiftiVolume(np.empty(image.shape[:3], dtype=np.uint8), np.asarray(image.affine, dtype=np.float64), image.header, path)


def execute(args: argparse.Namespace) -> int:
    """Run ``llamareg warp``; every input is checked before anything is written."""
    out = Path(args.out)
    if not out.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"--out {out} must name a .nii or .nii.gz file")
    check_out_folder(out.parent, option="--out")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out} already exists; give another --out or --overwrite to replace it")
    transform, fixed_path, moving_named = _transform(args)
    opened = open_volume(args.image, "label map" if args.labels else "image")
    volume = (read_labels if args.labels else read_intensities)(opened, args.image, "label map" if args.labels else "image")
    if args.inverse:
        reference_path = Path(args.reference) if args.reference else moving_named
        if reference_path is None:
            raise ValueError("--inverse needs --reference MOVING (the image whose grid the output takes)")
        reference = _reference(reference_path, "reference image")
        points, residual = transform.fixed_points(grid_of(reference))
        note = f", inversion residual {residual:.3g} mm"
    else:
        if args.reference is None and fixed_path is None:
            raise ValueError("--affine alone needs --reference FIXED (the image whose grid the output takes)")
        reference = _reference(Path(args.reference), "reference image") if args.reference else _reference(fixed_path, "displacement")
        points, note = transform.moving_points(grid_of(reference)), ""
    warped = warp_volume(volume, points, labels=args.labels)
    save_nifti(nifti_like(warped.astype(np.int32) if args.labels else warped, reference), out)
    print(f"wrote {out} on the grid of {reference.path}{note}")
    return 0
