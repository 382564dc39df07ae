"""Shared fixtures: small real models built from SmolLM2-shaped layers, tiny configs, and one short
real cpu-default training run."""

import hashlib
import json
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import llamareg
from llamareg.atomic import atomic_output, write_json
from llamareg.commands.train import run
from llamareg.config import load_config
from llamareg.inference.affine import AffineTransform
from llamareg.inference.grid import Grid
from llamareg.llm import load_llama_layers
from llamareg.networks.frozen_llm import FrozenLLM
from llamareg.networks.llamareg import LLaMAReg


@pytest.fixture(scope="session")
def smollm_random_layers():
    """The last SmolLM2-135M layer with random weights (fast; the pretrained one is tested in tests/llm)."""
    return load_llama_layers("random:smollm2-135m", [-1], seed=0)


@pytest.fixture
def small_model(smollm_random_layers):
    """A C=4 LLaMA-Reg on 32^3 volumes around a copy of the frozen layer."""
    torch.manual_seed(0)
    loaded = smollm_random_layers
    layers = torch.nn.ModuleList(type(layer)(loaded.spec) for layer in loaded.layers)
    layers.load_state_dict(loaded.layers.state_dict())
    llm = FrozenLLM(layers, loaded.final_norm, calls=2, source=loaded.source, fingerprint=loaded.fingerprint)
    return LLaMAReg(llm, shape=(32, 32, 32), base_channels=4, adapter_width=32, inner_adapter_width=32)


TINY_RUN = [
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=4",
    "data.num_val_subjects=3",
    "data.num_val_pairs=2",
    "model.base_channels=4",
    "model.adapter_width=32",
    "model.inner_adapter_width=32",
    "train.val_every=2",
    "train.log_every=1",
    # MLflow costs seconds per run (store creation); tests/tracking turn it on.
    "tracking.enabled=false",
]


@pytest.fixture
def tiny_overrides():
    """The overrides of :func:`tiny_config`, for runs through the command line."""
    return list(TINY_RUN)


@pytest.fixture
def tiny_config(tmp_path):
    """``tiny_config(*overrides, out=None)``: cpu-default shrunk to seconds per run, writing to ``out`` (tmp_path)."""

    def make(*overrides, out=None):
        return load_config("cpu-default", [*TINY_RUN, f"train.out={out or tmp_path}", *overrides])

    return make


# The cpu-template run cut to its first 150 of 450 iterations (about 3 minutes on a 2-core CPU): training
# pairs of one template, whose validation Dice rises within that budget, so the trainer's learning can be
# tested; a network trained on synthetic shapes (cpu-default) needs far more iterations to register.
TRAINED_PRESET = "cpu-template"
TRAINED_ITERATIONS = 150
TRAINED_RUN = [f"train.max_iters={TRAINED_ITERATIONS}", f"train.val_every={TRAINED_ITERATIONS}", "tracking.enabled=false"]

# Package parts that do not change what training produces (editing them keeps the cached run).
NOT_TRAINING = (
    "inference",
    "evaluation",
    "export",
    "cli.py",
    "commands/register.py",
    "commands/evaluate.py",
    "commands/export_pretrained.py",
)


@dataclass(frozen=True)
class TrainedRun:
    checkpoint: Path
    metrics: dict


def _training_code_digest() -> str:
    digest = hashlib.sha256()
    root = Path(llamareg.__file__).parent
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts and not relative.startswith(NOT_TRAINING):
            digest.update(relative.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def trained_run(request, tmp_path_factory) -> TrainedRun:
    """``best.pt`` and ``metrics.json`` of the short cpu-template run, trained once.

    Both are kept in pytest's cache under a key of the run's config and of every training source file
    of the package, so a later session with unchanged training code reuses them and any change to the
    model, data or trainer retrains.
    """
    out = tmp_path_factory.mktemp("trained")
    config = load_config(TRAINED_PRESET, [*TRAINED_RUN, f"train.out={out}"])
    identity = {**config.to_dict(), "train": {**config.to_dict()["train"], "out": ""}}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16] + "-" + _training_code_digest()
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    folder = Path(cache.mkdir("llamareg-trained-run")) if cache is not None else out
    checkpoint, metrics_file = folder / f"{key}.pt", folder / f"{key}.json"
    if not (checkpoint.is_file() and metrics_file.is_file()):
        metrics = run(config)
        with atomic_output(checkpoint) as temporary:
            temporary.write_bytes((out / "checkpoints" / "best.pt").read_bytes())
        write_json(metrics_file, metrics)  # last: its presence marks a complete entry
    return TrainedRun(checkpoint, json.loads(metrics_file.read_text()))


def known_transform(degrees=15.0, translation_mm=20.0, scale=1.1) -> AffineTransform:
    """A rotation about an oblique axis, a translation and an isotropic scaling, fixed points to moving points."""
    rotation = Rotation.from_rotvec(np.radians(degrees) * np.array([1.0, 1.0, 0.5]) / 1.5).as_matrix()
    return AffineTransform(scale * rotation, np.full(3, translation_mm / np.sqrt(3)))


def corner_error(found: AffineTransform, truth: AffineTransform, grid: Grid) -> float:
    """The largest distance between the two transforms' images of the grid's corner voxels, mm."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in grid.shape], indexing="ij")).reshape(3, -1).T
    world = corners @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    return float(np.linalg.norm(found.apply(world) - truth.apply(world), axis=1).max())


def smooth_field(grid: Grid, amplitude_mm: float) -> np.ndarray:
    """A smooth displacement of a few sine bumps across the grid."""
    index = np.stack(np.meshgrid(*[np.linspace(0, np.pi, n) for n in grid.shape], indexing="ij"), axis=-1)
    return amplitude_mm * np.stack(
        [
            np.sin(2 * index[..., 1]) * np.sin(index[..., 2]),
            np.sin(index[..., 0] + index[..., 2]),
            np.cos(2 * index[..., 0]) * np.sin(index[..., 1]),
        ],
        axis=-1,
    ).astype(np.float32)


@pytest.fixture(scope="session")
def affine_case():
    """The known affine of the pre-alignment tests (15 degrees, 20 mm, 10 %) and helpers to score and perturb it."""
    return SimpleNamespace(transform=known_transform, corner_error=corner_error, smooth_field=smooth_field)
