"""Which pairs chose the checkpoints: ``selection.json``, kept apart from the test pairs.

Every run records, beside its ``metrics.json``, the identities of the pairs its validation read (what
chose ``best.pt`` and the start of the next cascade step or LapIRN level; training has no other choice
to make, no early stopping) and those of the data's test pairs, which training never reads (its
``metrics.json`` reports validation figures only): a report on test pairs can then show that no
choice was made on them. Identities:

- a synthetic pair (``data.source=synth``) is its seed: ``synth-val-<data.seed>-<index>`` is the pair
  drawn from ``seeded_generator("synth-val", data.seed, index)``; each pair is its own anatomy.
- a pair of subjects is ``"<moving>-><fixed>"`` and its subjects their names: for the embedded data
  ``mni152-<split>-<k>``, drawn from ``seeded_generator("mni152", data.seed, split, k)``; for a shard
  folder its subject keys; for the dev-test ``devtest-<k>`` from ``seeded_generator("devtest", 0, k)``.

The test pairs are a shard folder's ``test_pairs.json`` (only the list is read here, no volume), and for
the synthetic and embedded sources (and embedded shards, which have no test split) the dev-test
(:mod:`llamareg.data.devtest`): MNI152 under deformations of a seed stream of its own, the unseen-anatomy
pairs their models are reported on.

The validation pairs are recorded as read, from the names of the pairs each validation registered,
not as configured: a run wired to validate on test pairs shows them in its ``selection.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from llamareg.config import Config
from llamareg.data.pair_datasets import consecutive_pairs

SELECTION_FILE = "selection.json"
SELECTION_FORMAT = "llamareg-selection-v1"

# The dev-test pairs that reports on synthetic or embedded training data use (benchmarks/generalization.py's
# default --pairs): subjects devtest-000..devtest-015 of seed 0, in consecutive pairs.
DEVTEST_PAIRS = 16
DEVTEST_SEED = 0

READ_BY_VALIDATION = [
    "checkpoint choice (checkpoints/best.pt)",
    "the start of the next cascade step or LapIRN level",
    "the validation figures of metrics.json",
]


def pair_identity(moving_name: str, fixed_name: str) -> str:
    """The identity of a pair from its item's ``moving_name`` and ``fixed_name``.

    A generated pair (its names ``<seed>-moving`` and ``<seed>-fixed...``) is its seed name; a pair of
    two subjects is ``"<moving>-><fixed>"``.

    Example:
        >>> pair_identity("synth-val-0-000003-moving", "synth-val-0-000003-fixed-aligned")
        'synth-val-0-000003'
        >>> pair_identity("mni152-val-000", "mni152-val-001")
        'mni152-val-000->mni152-val-001'
    """
    if moving_name.endswith("-moving"):
        stem = moving_name[: -len("-moving")]
        if fixed_name.startswith(f"{stem}-fixed"):
            return stem
    return f"{moving_name}->{fixed_name}"


def pair_subjects(identity: str) -> list[str]:
    """The subjects (anatomies) a pair identity uses: both subjects of ``"a->b"``; a generated pair is its own.

    Example:
        >>> pair_subjects("mni152-val-000->mni152-val-001"), pair_subjects("synth-val-0-000003")
        (['mni152-val-000', 'mni152-val-001'], ['synth-val-0-000003'])
    """
    return identity.split("->") if "->" in identity else [identity]


def _subjects(pairs: Iterable[str]) -> list[str]:
    return sorted({subject for pair in pairs for subject in pair_subjects(pair)})


def _devtest() -> dict[str, Any]:
    names = [f"devtest-{index:03d}" for index in range(DEVTEST_PAIRS)]
    pairs = [f"{names[moving]}->{names[fixed]}" for moving, fixed in consecutive_pairs(DEVTEST_PAIRS, DEVTEST_PAIRS)]
    return {
        "what": f"dev-test (llamareg.data.devtest): MNI152 under deformations of the seed stream 'devtest', seed {DEVTEST_SEED}, "
        f"the first {DEVTEST_PAIRS} subjects in consecutive pairs",
        "seed_stream": ["devtest", DEVTEST_SEED],
        "pairs": pairs,
        "subjects": _subjects(pairs),
    }


def data_roles(config: Config) -> dict[str, dict[str, Any]]:
    """The training subjects (or seed stream), the configured validation seed stream and the test pairs of
    ``config.data`` by identity, reading no volume.

    Returns:
        ``{"training": {...}, "validation": {...}, "test": {...}}``; each may hold ``seed_stream`` (the
        keys of :func:`~llamareg.data.synthetic.seeded_generator` before the item index), ``subjects``
        and, for the test role, ``pairs`` and ``what``. A shard folder without test pairs (other than
        the embedded data's) has an empty test role.
    """
    data, seed = config.data, config.data.seed
    if data.source == "synth":
        return {
            "training": {"seed_stream": [f"synth-train-{config.train.seed}", seed]},
            "validation": {"seed_stream": ["synth-val", seed]},
            "test": _devtest(),
        }
    if data.source == "template":
        return {
            "training": {
                "seed_stream": ["mni152", seed, "train"],
                "subjects": [f"mni152-train-{index:03d}" for index in range(data.num_train_subjects)],
            },
            "validation": {"seed_stream": ["mni152", seed, "val"]},
            "test": _devtest(),
        }
    from llamareg.data.shards.reader import ShardSet

    shards = ShardSet(data.source)
    roles: dict[str, dict[str, Any]] = {
        "training": {"subjects": sorted(shards.keys("train"))},
        "validation": {"pair_list": shards.manifest["pairs"].get("val")},
    }
    if "test" in shards.manifest["pairs"]:
        pairs = [f"{moving}->{fixed}" for moving, fixed in shards.pairs("test")]
        roles["test"] = {
            "what": f"the test pairs of {shards.directory} ({shards.manifest['pairs']['test']})",
            "pair_list": shards.manifest["pairs"]["test"],
            "pairs": pairs,
            "subjects": _subjects(pairs),
        }
    elif shards.manifest.get("layout") == "embedded":
        roles["test"] = _devtest()
    else:
        roles["test"] = {"what": f"none: {shards.directory} was built without a test split", "pairs": [], "subjects": []}
    return roles


def phase_entry(
    name: str,
    validation_pairs: list[str],
    best_iteration: int,
    best_dice: float,
    best_chosen_on: list[str],
    started_from: dict[str, Any] | None,
) -> dict[str, Any]:
    """One phase's line of ``selection.json``: the pairs its validations read, its best checkpoint and the
    pairs that chose it, and what it started from (see :func:`started_from`; None for a first phase)."""
    return {
        "phase": name,
        "validation_pairs": list(validation_pairs),
        "best_iteration": best_iteration,
        "best_val_dice": best_dice,
        "best_chosen_on": list(best_chosen_on),
        "started_from": started_from,
    }


def _started_pairs(start: dict[str, Any] | None) -> list[str]:
    """Every pair that chose a phase's starting point, back to the first phase."""
    pairs: list[str] = []
    while start:
        pairs += start.get("chosen_on") or []
        start = start.get("started_from")
    return pairs


def selection_record(config: Config, roles: dict[str, dict[str, Any]], phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``selection.json`` for a run of ``phases`` (entries of :func:`phase_entry`, in order)
    on data of ``roles`` (:func:`data_roles`).

    ``validation.pairs`` is every pair that any phase's validation read or that chose any phase's start
    (in order of first reading); ``test.read_by`` is empty: the trainer reports on validation pairs
    only (``llamareg evaluate`` and the benchmarks report on the test pairs).
    """
    read: dict[str, None] = {}
    for entry in phases:
        read.update(dict.fromkeys(_started_pairs(entry["started_from"])))
        read.update(dict.fromkeys(entry["validation_pairs"]))
    validation = {**roles["validation"], "read_by": READ_BY_VALIDATION, "pairs": list(read), "subjects": _subjects(read)}
    return {
        "format": SELECTION_FORMAT,
        "name": config.name,
        "data": {"source": config.data.source, "seed": config.data.seed, "train_seed": config.train.seed},
        "training": roles["training"],
        "validation": validation,
        "test": {**roles["test"], "read_by": []},
        "phases": phases,
        "best_checkpoint": {"path": "checkpoints/best.pt", "chosen_on": phases[-1]["best_chosen_on"] if phases else []},
    }


def started_from(checkpoint: Path, payload: dict[str, Any], relative_to: Path) -> dict[str, Any]:
    """What a phase starts from: the previous phase's best checkpoint (path relative to the run folder),
    its iteration and the validation pairs that chose it (and, in turn, its own start)."""
    try:
        path = str(Path(checkpoint).resolve().relative_to(Path(relative_to).resolve()))
    except ValueError:
        path = str(checkpoint)
    return {
        "checkpoint": path,
        "iteration": payload.get("iteration"),
        "chosen_on": list(payload.get("best_validation_pairs") or []),
        "started_from": payload.get("started_from"),
    }
