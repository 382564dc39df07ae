"""Shard loader vs. reading the same volumes from .nii.gz, and the shard build rate.

A synthetic NIfTI dataset (int16 images with smooth structure and noise, uint8 labels, RAS, already at
a shape divisible by 16) is written to a temporary folder and built into shards with the ``folder``
layout. Then the training volumes are read once through a DataLoader with the same number of workers
in two ways, each giving the same tensors (float32 image in [0, 1], int64 labels):

* shards: :class:`llamareg.data.shards.ShardVolumeStream` (SHA-256 check on each shard's first
  opening included);
* NIfTI: a map-style dataset that reads each image and label file with nibabel and normalises the
  image as the builder does (percentile clipping).

One run of each, files in the page cache. Results go to ``benchmarks/results/data_loading.md`` and ``.json``.

Usage:
    python benchmarks/data_loading.py [--subjects 48] [--shape 96 112 96] [--workers 2] [--shard-mb 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

import nibabel  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from llamareg.data.layouts import discover  # noqa: E402
from llamareg.data.nifti import read_subject  # noqa: E402
from llamareg.data.preprocess import Preprocessing, normalize_intensity  # noqa: E402
from llamareg.data.shards import ShardSet, ShardVolumeStream, build_shards  # noqa: E402
from llamareg.data.volume import Volume  # noqa: E402


def write_dataset(folder: Path, subjects: int, shape: tuple[int, int, int]) -> None:
    """``images/`` and ``labels/`` of synthetic subjects: smoothed random fields, thresholded into 4 labels."""
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for index in range(subjects):
        field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 4)
        labels = np.digitize(field, np.quantile(field, [0.4, 0.6, 0.8])).astype(np.uint8)
        image = (300.0 * labels + rng.normal(200, 30, shape)).astype(np.int16)
        for kind, data in (("images", image), ("labels", labels)):
            (folder / kind).mkdir(parents=True, exist_ok=True)
            nibabel.save(nibabel.Nifti1Image(data, affine), folder / kind / f"case{index:03d}.nii.gz")


class NiftiVolumes(Dataset):
    """The same volumes read from .nii.gz at every access, normalised as the shard builder does."""

    def __init__(self, records: list, clip_percentiles: tuple[float, float]) -> None:
        self.records, self.clip_percentiles = records, clip_percentiles

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Volume:
        record = self.records[index]
        image, labels, affine = read_subject(record.image, record.labels)
        image = normalize_intensity(image, self.clip_percentiles)
        return Volume(torch.from_numpy(image)[None], torch.from_numpy(labels)[None], torch.from_numpy(affine), record.key)


def volumes_per_second(dataset, workers: int) -> tuple[float, float, int]:
    """Steady-state volumes per second (timed from the first volume on), seconds to the first volume, and the count."""
    volumes = iter(DataLoader(dataset, batch_size=None, num_workers=workers))
    start = time.perf_counter()
    next(volumes)
    first = time.perf_counter()
    count = 1 + sum(1 for _ in volumes)
    return (count - 1) / (time.perf_counter() - first), first - start, count


def measure(subjects: int, shape: tuple[int, int, int], workers: int, shard_mb: float) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        folder, out = Path(temporary) / "nifti", Path(temporary) / "shards"
        write_dataset(folder, subjects, shape)
        dataset = discover("folder", folder)
        options = Preprocessing(shape=shape)
        tick = time.perf_counter()
        manifest = build_shards(dataset, out, options, shard_mb=shard_mb)
        build_seconds = time.perf_counter() - tick
        train_keys = set(ShardSet(out).keys("train"))
        shard_rate, shard_first, shard_count = volumes_per_second(ShardVolumeStream(out), workers)
        records = [record for record in dataset.subjects if record.key in train_keys]
        nifti_rate, nifti_first, nifti_count = volumes_per_second(NiftiVolumes(records, options.clip_percentiles), workers)
        if shard_count != nifti_count:
            raise RuntimeError(f"the loaders read {shard_count} and {nifti_count} volumes; they must read the same ones")
        nifti_mb = sum(path.stat().st_size for path in folder.rglob("*.nii.gz")) / 1e6
        return {
            "subjects": subjects,
            "shape": list(shape),
            "workers": workers,
            "shard_mb_target": shard_mb,
            "train_shards": len(ShardSet(out).shards("train")),
            "shards_mb": sum(entry["bytes"] for entry in manifest["shards"]) / 1e6,
            "nifti_mb": nifti_mb,
            "build_seconds": build_seconds,
            "build_volumes_per_second": subjects / build_seconds,
            "volumes_read": shard_count,
            "shard_volumes_per_second": shard_rate,
            "nifti_volumes_per_second": nifti_rate,
            "shard_first_volume_seconds": shard_first,
            "nifti_first_volume_seconds": nifti_first,
            "ratio": shard_rate / nifti_rate,
        }


def write_results(row: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    (RESULTS / "data_loading.json").write_text(json.dumps({"meta": meta, "row": row}, indent=2) + "\n")
    shape = "x".join(map(str, row["shape"]))
    lines = [
        "# Data loading: shards vs. NIfTI, and the shard build rate",
        "",
        f"Measured {meta['date']} on {meta['machine']}, {meta['cpu_threads']} threads, torch {meta['torch']}, by "
        f"`python benchmarks/data_loading.py`. One run. {row['subjects']} synthetic subjects (int16 image, uint8 labels) "
        f"of {shape} voxels, {row['nifti_mb']:.0f} MB as .nii.gz, {row['shards_mb']:.0f} MB as shards "
        f"({row['train_shards']} training shards of about {row['shard_mb_target']:g} MB). Both loaders give the same tensors "
        f"(float32 image in [0, 1], int64 labels) for the {row['volumes_read']} training volumes, through a DataLoader with "
        f"{row['workers']} workers; the NIfTI loader decompresses and normalises at each read, the shards hold the result. "
        "Rates are timed from the first volume to the last (worker start-up and first reads shown apart).",
        "",
        "| | volumes / s | first volume after (s) |",
        "|---|---:|---:|",
        f"| shard loader (`ShardVolumeStream`) | {row['shard_volumes_per_second']:.1f} | {row['shard_first_volume_seconds']:.2f} |",
        f"| .nii.gz (nibabel + normalisation) | {row['nifti_volumes_per_second']:.1f} | {row['nifti_first_volume_seconds']:.2f} |",
        f"| **ratio shards / NIfTI** | **{row['ratio']:.1f}x** | |",
        f"| shard build (`build_shards`: read, preprocess, write, checksums; one process) | {row['build_volumes_per_second']:.1f} | |",
        "",
        "The machine's cores are shared with other jobs, so a single run's figures vary by tens of percent.",
        "",
    ]
    (RESULTS / "data_loading.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=48)
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 112, 96])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-mb", type=float, default=32.0)
    args = parser.parse_args()
    write_results(measure(args.subjects, tuple(args.shape), args.workers, args.shard_mb))


if __name__ == "__main__":
    main()
