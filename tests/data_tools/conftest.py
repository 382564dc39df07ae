"""Tiny NIfTI datasets in each layout the shard builder reads, written with nibabel into tmp_path."""

import importlib.util
import json
import types
from pathlib import Path

import nibabel
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Voxels along the file's axes run left, posterior, superior (LPS) at 1.5 mm: the builder must reorient.
LPS_AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, -1.5, 0, 25.0], [0, 0, 1.5, -10.0], [0, 0, 0, 1]])


def subject_arrays(seed: int, shape=(20, 22, 18)) -> tuple[np.ndarray, np.ndarray]:
    """An int16 'scan' and its labels 1-3: three boxes at seed-dependent places, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for label in (1, 2, 3):
        low = [int(rng.integers(1, size // 2)) for size in shape]
        labels[tuple(slice(start, start + size // 3) for start, size in zip(low, shape))] = label
    image = (200 * labels + rng.normal(100, 20, shape)).astype(np.int16)
    return image, labels


def save(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    return path


def make_learn2reg(root: Path, count: int = 6, val: int = 2) -> Path:
    """OASIS-style Learn2Reg folder: the last ``val`` subjects are only in registration_val (the test pairs)."""
    for index in range(count):
        image, labels = subject_arrays(index, shape=(20 + index % 2, 22, 18))
        save(root / "imagesTr" / f"OASIS_{index + 1:04d}_0000.nii.gz", image)
        save(root / "labelsTr" / f"OASIS_{index + 1:04d}_0000.nii.gz", labels)
    names = [f"OASIS_{index + 1:04d}_0000.nii.gz" for index in range(count)]
    description = {
        "name": "OASIS",
        "training": [{"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"} for name in names[: count - val]],
        "registration_val": [{"fixed": f"./imagesTr/{names[-1]}", "moving": f"./imagesTr/{names[-2]}"}],
    }
    path = root / "OASIS_dataset.json"
    path.write_text(json.dumps(description))
    return path


def make_oasis(root: Path, count: int = 6) -> Path:
    for index in range(count):
        image, labels = subject_arrays(10 + index)
        folder = root / f"OASIS_OAS1_{index + 1:04d}_MR1"
        save(folder / "aligned_norm.nii.gz", image)
        save(folder / "aligned_seg35.nii.gz", labels.astype(np.float32))  # seg files are often float
    return root


def make_oai(root: Path, count: int = 6) -> Path:
    """Per-knee folders of an image and binary masks; every other knee has a patella mask."""
    names = {1: "femur", 2: "femoral_cartilage", 3: "tibia"}
    for index in range(count):
        image, labels = subject_arrays(20 + index)
        folder = root / f"knee{index:02d}"
        save(folder / "image.nii.gz", image)
        for label, name in names.items():
            save(folder / f"{name}.nii.gz", (labels == label).astype(np.uint8))
        save(folder / "tibial_cartilage.nii.gz", np.zeros_like(labels))
        if index % 2:
            patella = np.zeros_like(labels)
            patella[:2, :2, :2] = 1
            save(folder / "patella.nii", patella)
    return root


def make_folder(root: Path, count: int = 6) -> Path:
    for index in range(count):
        image, labels = subject_arrays(30 + index)
        save(root / "images" / f"case{index}.nii.gz", image)
        save(root / "labels" / f"case{index}.nii.gz", labels)
    return root


def make_csv(root: Path, count: int = 6) -> Path:
    """A CSV naming the images of make_folder: the first two marked test, the next two val, the rest train
    (the reverse of the key order the builder holds subjects out in, so that the column is seen to decide)."""
    make_folder(root / "data", count)
    splits = ["test", "test", "val", "val"] + ["train"] * (count - 4)
    rows = ["image,label,split"] + [f"data/images/case{i}.nii.gz,data/labels/case{i}.nii.gz,{split}" for i, split in enumerate(splits)]
    path = root / "list.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


MAKERS = {"learn2reg": make_learn2reg, "oasis": make_oasis, "oai": make_oai, "folder": make_folder, "csv": make_csv}


@pytest.fixture
def make_dataset(tmp_path):
    """``make_dataset(kind, count=6)`` -> (layout, input path) of a tiny dataset under tmp_path/<kind>."""

    def make(kind: str, count: int = 6):
        layout = "folder" if kind == "csv" else kind
        return layout, MAKERS[kind](tmp_path / kind, count)

    return make


@pytest.fixture(scope="session")
def build_shards_cli():
    """The ``main(argv)`` of data_tools/build_shards.py, loaded from its file as the command line runs it."""
    spec = importlib.util.spec_from_file_location("build_shards_cli", ROOT / "data_tools" / "build_shards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="session")
def tools():
    """The helpers above, for tests (conftest modules cannot be imported under --import-mode=importlib)."""
    return types.SimpleNamespace(save=save, subject_arrays=subject_arrays, lps_affine=LPS_AFFINE)
