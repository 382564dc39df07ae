"""``llamareg register``: register a pair (or a pair list) of NIfTI volumes with a trained checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llamareg.atomic import check_out_folder, write_json
from llamareg.inference.fields import invert_displacement, jacobian_determinant_map
from llamareg.inference.grid import grid_options
from llamareg.inference.images import NiftiVolume
from llamareg.inference.itk import write_itk_affine
from llamareg.inference.model_io import TrainedModel, load_trained_model
from llamareg.inference.outputs import displacement_image, nifti_like, save_nifti
from llamareg.data.pair_list import PairPaths, read_pair_list
from llamareg.inference.pair_files import check_pair, load_pair, pair_names, world_box_overlap
from llamareg.inference.refine import DEFAULT_LR, MAX_REFINE_VOXELS, check_options
from llamareg.inference.registration import Registration, grid_of, register_pair

# What an earlier `register` into the same folder left: replacing it takes --overwrite.
# Below this share of the fixed image's box covered by the moving image's, the images are probably not
# aligned in world coordinates (a header or pre-alignment problem): register says so.
LOW_OVERLAP = 0.5
REGISTER_OUTPUTS = (
    "registration.json",
    "warped.nii.gz",
    "displacement.nii.gz",
    "affine.txt",
    "jacobian.nii.gz",
    "inverse_displacement.nii.gz",
    "*__*",
)
DESCRIPTION = "Register a moving NIfTI volume to a fixed one with a trained LLaMA-Reg checkpoint."
EPILOG = f"""\
Inputs may have any orientation, size and spacing: both images are brought onto the model grid, each
normalised to [0, 1] (minimum -> 0, 99.5th percentile of the voxels above it -> 1, clipped) as the
training data were. The model grid has RAS axes and isotropic voxels of the size the model was trained
at (the checkpoint's data.spacing_mm; --spacing MM overrides it) and covers the fixed image's world
bounding box, centred on it, each side rounded to the nearest multiple of 16 voxels (--shape D H W crops or
pads the box to that shape instead). Without --affine or --rigid the moving image is assumed to be
roughly aligned with the fixed one in world coordinates.

--affine (12 parameters) or --rigid (6) first aligns the moving image to the fixed one: centre-of-mass
start, then Adam on the model's own similarity, coarse to fine on 4x, 2x and 1x grids of the fixed box
(at least 2 mm). The deformable step starts from that alignment; affine.txt holds the affine as an ITK
text transform (fixed to moving points, LPS; antsApplyTransforms, SimpleITK and ITK read it) and
displacement.nii.gz the composition of both, so it alone maps fixed points to moving points.

--refine N continues from the network's field with N Adam steps on the training objective, coarse to
fine on grids of 4x, 2x and 1x the fixed image's voxel size (levels no coarser than the model grid),
each finer level getting half the steps of the one before; the moving image is sampled from its own
voxels at every step. The finest level has at most {MAX_REFINE_VOXELS:,} voxels: a larger fixed image
(e.g. a 1 mm brain) is refined up to its first halving under that and the field interpolated up.

Outputs in --out (batch mode: one folder per pair, --out/<fixed>__<moving>/, after the files' names),
all on the fixed image's grid with its affine: warped.nii.gz (the moving image, its own intensities),
warped_labels.nii.gz (with labels), displacement.nii.gz and registration.json (with the pair's index in
the list); with --jacobian, jacobian.nii.gz (det J of p -> p + u(p), the moving volume per fixed volume;
<= 0 where it folds); with --inverse, inverse_displacement.nii.gz on the MOVING image's grid (its point q
corresponds to the fixed point q + v(q)); with --affine/--rigid, affine.txt. `llamareg warp` applies
displacement.nii.gz to other images and labels of the moving image, or, with --inverse, the other way.

Displacement convention: displacement.nii.gz is (X, Y, Z, 3) float32 on the fixed image's voxel grid,
in world RAS millimetres: the fixed image's point p corresponds to the moving image's point p + u(p),
and warped(p) = moving(p + u(p)). With --itk, displacement_itk.nii.gz holds the same field in the
ITK/ANTs convention: 5D (X, Y, Z, 1, 3), intent code 1007 (vector), LPS millimetres
(usable with antsApplyTransforms -t displacement_itk.nii.gz).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fixed", nargs="?", help="fixed image (NIfTI); the outputs take its grid")
    parser.add_argument("moving", nargs="?", help="moving image (NIfTI)")
    parser.add_argument(
        "--checkpoint",
        help="trained checkpoint (.pt) or exported model (.safetensors), e.g. "
        "runs/cpu-default/checkpoints/best.pt (default: the pretrained model shipped with llamareg)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already in --out (without it they are an error)")
    parser.add_argument("--moving-labels", help="label map on the moving image's grid to warp (nearest neighbour)")
    parser.add_argument("--pairs", help="batch mode: a JSON list of {fixed, moving[, moving_labels]} (relative paths from its folder)")
    parser.add_argument(
        "--one-way",
        action="store_true",
        help="run the network moving-to-fixed only (default: both ways, averaged, so that an image "
        "registered to itself gets zero displacement)",
    )
    parser.add_argument("--refine", type=int, default=0, metavar="N", help="N Adam steps of instance optimisation on the pair (default 0)")
    parser.add_argument(
        "--refine-lr",
        type=float,
        default=DEFAULT_LR,
        help=f"instance optimisation step size in voxels of each level (default {DEFAULT_LR})",
    )
    parser.add_argument("--spacing", metavar="MM", help="model grid voxel size in mm (default: the training spacing, data.spacing_mm)")
    parser.add_argument(
        "--shape",
        nargs="+",
        metavar="N",
        help="model grid shape, D H W or D,H,W, multiples of 16 (default: the fixed image's box, rounded to the nearest multiples of 16)",
    )
    parser.add_argument("--itk", action="store_true", help="also write displacement_itk.nii.gz in the ITK/ANTs convention")
    prealign = parser.add_mutually_exclusive_group()
    prealign.add_argument(
        "--affine",
        dest="prealign",
        action="store_const",
        const="affine",
        help="align the images with an affine transform first (written to affine.txt)",
    )
    prealign.add_argument(
        "--rigid",
        dest="prealign",
        action="store_const",
        const="rigid",
        help="align the images with a rigid transform first (written to affine.txt)",
    )
    parser.add_argument(
        "--inverse", action="store_true", help="also write inverse_displacement.nii.gz (moving to fixed, on the moving grid)"
    )
    parser.add_argument("--jacobian", action="store_true", help="also write jacobian.nii.gz (det J on the fixed grid)")
    parser.add_argument("--llm", help="where the LLM weights live if not where training read them (same weights)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: CUDA when available")


def _pairs_from_args(args: argparse.Namespace) -> list[PairPaths]:
    single = args.fixed is not None or args.moving is not None
    if args.pairs is not None:
        if single or args.moving_labels:
            raise ValueError("give either FIXED MOVING [--moving-labels L] or --pairs PAIRS.json, not both")
        return read_pair_list(args.pairs)
    if args.fixed is None or args.moving is None:
        raise ValueError("give FIXED and MOVING images (or --pairs PAIRS.json)")
    labels = Path(args.moving_labels) if args.moving_labels else None
    return [PairPaths(Path(args.fixed), Path(args.moving), moving_labels=labels)]


def write_registration(
    out: Path, registration: Registration, fixed: NiftiVolume, moving: NiftiVolume, record: dict, args: argparse.Namespace
) -> None:
    """Write one pair's outputs into ``out``, each file atomically (the options choose the optional ones)."""
    save_nifti(nifti_like(registration.warped, fixed), out / "warped.nii.gz")
    if registration.warped_labels is not None:
        save_nifti(nifti_like(registration.warped_labels.astype("int32"), fixed), out / "warped_labels.nii.gz")
    save_nifti(displacement_image(registration.displacement, fixed), out / "displacement.nii.gz")
    if args.itk:
        save_nifti(displacement_image(registration.displacement, fixed, itk=True), out / "displacement_itk.nii.gz")
    if registration.prealignment is not None:
        write_itk_affine(registration.prealignment.transform, out / "affine.txt")
    fixed_grid = grid_of(fixed)
    if args.jacobian:
        save_nifti(nifti_like(jacobian_determinant_map(registration.displacement, fixed_grid), fixed), out / "jacobian.nii.gz")
    if args.inverse:
        inverse = invert_displacement(registration.displacement, fixed_grid, grid_of(moving))
        image = displacement_image(inverse.displacement, moving)
        image.header["descrip"] = b"llamareg inverse RAS mm: fixed=q+v(q)"
        save_nifti(image, out / "inverse_displacement.nii.gz")
        record["inverse"] = {
            "file": "inverse_displacement.nii.gz: (X, Y, Z, 3) world RAS mm on the moving grid; fixed point = q + v(q)",
            "residual_mm": inverse.residual_mm,
            "iterations": inverse.iterations,
        }
    write_json(out / "registration.json", record)


def _record(index: int, pair: PairPaths, trained: TrainedModel, registration: Registration, overlap: float) -> dict:
    refinement, prealignment = registration.refinement, registration.prealignment
    return {
        "pair_index": index,
        "fixed": str(pair.fixed),
        "world_box_overlap": overlap,
        "moving": str(pair.moving),
        "moving_labels": str(pair.moving_labels) if pair.moving_labels else None,
        "checkpoint": trained.reference,
        "checkpoint_sha256": trained.sha256,
        "seconds": registration.seconds,
        "network_seconds": registration.network_seconds,
        "precision": registration.precision,
        "model_grid": {
            "shape": list(registration.grid.shape),
            "spacing_mm": registration.grid.spacing[0],
            "affine": registration.grid.affine.tolist(),
        },
        "displacement": "displacement.nii.gz: (X, Y, Z, 3) world RAS mm on the fixed grid; moving point = p + u(p)",
        "prealignment": None if prealignment is None else {"file": "affine.txt", **prealignment.to_dict()},
        "symmetric": registration.symmetric,
        "refine": None if refinement is None else refinement.to_dict(),
    }


def execute(args: argparse.Namespace) -> int:
    """Run ``llamareg register``; every input is checked before the model loads or anything is written."""
    check_options(args.refine, args.refine_lr)
    spacing, shape = grid_options(args.spacing, args.shape)
    out = check_out_folder(args.out, REGISTER_OUTPUTS, args.overwrite)
    pairs = _pairs_from_args(args)
    opened = [check_pair(pair) for pair in pairs]
    overlaps = []
    for pair, headers in zip(pairs, opened):
        load_pair(pair, headers)  # voxel checks (finite, non-constant, whole-number labels) up front
        overlaps.append(world_box_overlap(headers))
        if overlaps[-1] < LOW_OVERLAP and args.prealign is None:
            print(
                f"warning: {pair.moving} covers only {100 * overlaps[-1]:.0f} % of {pair.fixed}'s field of view in world "
                "coordinates; if they are not aligned, align them first (e.g. an affine registration)",
                file=sys.stderr,
            )
    trained = load_trained_model(args.checkpoint, llm=args.llm, device=args.device)
    names = pair_names(pairs)
    for index, (pair, headers) in enumerate(zip(pairs, opened)):
        loaded = load_pair(pair, headers)
        registration = register_pair(
            trained,
            loaded.fixed,
            loaded.moving,
            loaded.moving_labels,
            args.refine,
            args.refine_lr,
            spacing=spacing,
            shape=shape,
            symmetric=not args.one_way,
            prealign=args.prealign,
        )
        folder = out / names[index] if args.pairs else out
        record = _record(index, pair, trained, registration, overlaps[index])
        write_registration(folder, registration, loaded.fixed, loaded.moving, record, args)
        print(f"{pair.moving} -> {pair.fixed}: {registration.seconds:.2f} s, wrote {folder}")
    return 0
