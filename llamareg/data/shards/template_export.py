"""Write the embedded default (synthetic MNI152 subjects) as a shard folder, with NIfTI copies of its volumes.

Trained from, these shards give the same training subjects and exactly the same validation pairs as
``data.source=template`` with the same data settings, so the shard path is exercised on the default data.
They have no test split: the test set of the template data is the MNI152 dev-test
(:mod:`llamareg.data.devtest`), subjects of another seed stream.
"""

from __future__ import annotations

import os
from typing import Any

from llamareg.config import Config
from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.nifti import write_nifti
from llamareg.data.pair_datasets import consecutive_pairs
from llamareg.data.shards.writer import DEFAULT_SHARD_MB, ShardSetWriter

NIFTI_FOLDER = "nifti"


def export_embedded(config: Config, out: str | os.PathLike, shard_mb: float = DEFAULT_SHARD_MB, overwrite: bool = False) -> dict[str, Any]:
    """Synthesise the subjects ``config.data`` describes and write them to shards in ``out``; returns the manifest.

    The volumes are also saved as ``<out>/nifti/{images,labels}/<name>.nii.gz``, which ``val_pairs.json``
    names; the validation pairs are ``data.num_val_pairs`` consecutive pairs of the validation subjects,
    as :func:`llamareg.data.factory.build_pair_datasets` forms them. No test pairs are written.
    """
    data = config.data
    train, val = build_embedded_volumes(
        shape=tuple(data.shape),
        num_train=data.num_train_subjects,
        num_val=data.num_val_subjects,
        seed=data.seed,
        max_displacement=data.max_displacement,
        control_spacing=data.control_spacing,
        spacing_mm=data.spacing_mm,
    )
    pairs = consecutive_pairs(len(val), data.num_val_pairs)  # before anything is written: a bad count stops the export here
    settings = {
        key: getattr(data, key)
        for key in (
            "shape",
            "num_train_subjects",
            "num_val_subjects",
            "num_val_pairs",
            "spacing_mm",
            "max_displacement",
            "control_spacing",
            "seed",
        )
    }
    writer = ShardSetWriter(out, shard_mb=shard_mb, overwrite=overwrite)
    try:
        files = {}
        for split, volumes in (("train", train), ("val", val)):
            for volume in volumes:
                image, labels, affine = volume.image[0].numpy(), volume.labels[0].numpy(), volume.affine.numpy()
                files[volume.name] = {
                    "image": write_nifti(writer.out / NIFTI_FOLDER / "images" / f"{volume.name}.nii.gz", image, affine),
                    "labels": write_nifti(writer.out / NIFTI_FOLDER / "labels" / f"{volume.name}.nii.gz", labels, affine),
                }
                writer.add(volume.name, split, image, labels, affine, files[volume.name])
        val_pairs = [
            {
                "moving": files[val[moving].name]["image"],
                "fixed": files[val[fixed].name]["image"],
                "moving_labels": files[val[moving].name]["labels"],
                "fixed_labels": files[val[fixed].name]["labels"],
            }
            for moving, fixed in pairs
        ]
        return writer.finish(val_pairs, None, {"layout": "embedded", "input": "embedded", "embedded": settings, "skipped": []})
    except BaseException:
        writer.abort()  # as a failed build: no partial output, and a rerun needs no --overwrite
        raise
