"""Training schedules: one phase; cascaded LLaMA-Reg step by step, or step 1 then all steps jointly; or
the phases a network declares for itself (LapIRN level by level)."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from llamareg.atomic import atomic_output, check_out_folder, write_json
from llamareg.config import Config
from llamareg.data.factory import build_pair_datasets, check_data_source
from llamareg.distributed.context import DistributedContext
from llamareg.models import build_model, check_llm_source, declared_phases
from llamareg.networks.llamareg import LLaMAReg
from llamareg.networks.phases import DeclaredPhase
from llamareg.training.checkpoint import load_model_state, read_checkpoint
from llamareg.tracking import TrainingRun, open_training_run
from llamareg.training.optimization import LAST_FILE, resume_point_exists
from llamareg.training.selection import SELECTION_FILE, data_roles, selection_record, started_from
from llamareg.training.trainer import Trainer, check_resume_config

STEP_SUMMARY_KEYS = (
    "val_dice",
    "val_dice_best",
    "best_iteration",
    "validation_curve",
    "val_folding_pct",
    "val_sdlogj_l2r",
    "iterations",
    "peak_memory_mb",
    "peak_memory_of",
    "train_seconds_per_iteration",
    "wall_seconds",
)


@dataclass(frozen=True)
class Phase:
    """One training phase: a model of ``model_steps`` steps of which ``trainable`` (0-based) train.

    A phase the network declares for itself (``declared``, e.g. one of LapIRN's levels) builds the network
    with its sizes and selects what trains; ``trainable`` and ``shared_trains`` do not apply.
    ``name`` names the phase's MLflow child run.
    """

    number: int
    model_steps: int
    trainable: frozenset[int]
    shared_trains: bool
    iterations: int
    out: Path
    name: str = ""
    declared: DeclaredPhase | None = None

    @property
    def run_name(self) -> str:
        return self.name or f"step{self.number}"


def plan_phases(config: Config) -> list[Phase]:
    """The phases ``config`` asks for.

    One step (and every baseline but LapIRN's schedule): a single phase writing to ``train.out``. Step
    by step: phase k trains step k with steps 1..k-1 (and the shared encoder) frozen, in
    ``<out>/step<k>``. Joint: step 1 alone in ``<out>/step1``, then all steps together with the shared
    encoder frozen in ``<out>/joint``. ``train.schedule=lapirn``: the phases the network declares
    (:func:`llamareg.models.declared_phases`), each in ``<out>/<phase name>``.
    """
    steps, out = config.model.steps, Path(config.train.out)
    if config.train.schedule == "lapirn":
        return _declared_phases(config, out)
    if steps == 1:
        count = 1
    else:
        count = steps if config.train.schedule == "step-by-step" else 2
    iterations = config.train.step_iters or [config.train.max_iters] * count
    if len(iterations) != count:
        raise ValueError(
            f"train.step_iters has {len(iterations)} entries but the {config.train.schedule} schedule of "
            f"{steps} steps has {count} phases; give one iteration count per phase"
        )
    if steps == 1:
        return [Phase(1, 1, frozenset({0}), True, iterations[0], out)]
    if config.train.schedule == "step-by-step":
        return [Phase(k, k, frozenset({k - 1}), k == 1, iterations[k - 1], out / f"step{k}") for k in range(1, steps + 1)]
    return [
        Phase(1, 1, frozenset({0}), True, iterations[0], out / "step1"),
        Phase(2, steps, frozenset(range(steps)), False, iterations[1], out / "joint"),
    ]


def _declared_phases(config: Config, out: Path) -> list[Phase]:
    declared = declared_phases(config)
    iterations = config.train.step_iters or [config.train.max_iters] * len(declared)
    if len(iterations) != len(declared):
        raise ValueError(
            f"train.step_iters has {len(iterations)} entries but {config.model.architecture}'s own schedule has {len(declared)} "
            f"phases ({', '.join(spec.name for spec in declared)}); give one iteration count per phase"
        )
    return [
        Phase(number, 1, frozenset({0}), True, count, out / spec.name, name=spec.name, declared=spec)
        for number, (spec, count) in enumerate(zip(declared, iterations), start=1)
    ]


def _phase_config(config: Config, phase: Phase) -> Config:
    """The config one phase trains with (and stores in its checkpoints): its step count, its output folder
    and iterations; for a declared phase its sizes and the scale weights of its fields (the last ones)."""
    model = dataclasses.replace(config.model, steps=phase.model_steps)
    train = dataclasses.replace(config.train, out=str(phase.out), max_iters=phase.iterations, step_iters=[])
    if phase.declared is not None:
        model = dataclasses.replace(model, sizes={**config.model.sizes, **phase.declared.sizes})
        weights = config.train.scale_weights[-phase.declared.fields :]
        train = dataclasses.replace(train, scale_weights=weights, schedule="step-by-step")
    return dataclasses.replace(config, model=model, train=train)


def select_trainable(model: nn.Module, phase: Phase) -> None:
    """Make the parts ``phase`` trains trainable and freeze the rest (a one-phase baseline trains whole)."""
    if phase.declared is not None:
        phase.declared.select(model)
    elif isinstance(model, LLaMAReg):
        model.train_only(set(phase.trainable), shared=phase.shared_trains)


def _finished(phase: Phase) -> dict[str, Any] | None:
    """The phase's metrics if it ran to its iteration count or its time limit, else None."""
    path = phase.out / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if metrics.get("iterations") == phase.iterations or metrics.get("stopped_by") == "max_minutes" else None


def existing_run(config: Config, phases: list[Phase]) -> Path | None:
    """A file that shows ``train.out`` holds an earlier run (its metrics or a checkpoint), or None."""
    candidates = [Path(config.train.out) / "metrics.json", Path(config.train.out) / "checkpoints"]
    for phase in phases:
        candidates += [phase.out / "metrics.json", phase.out / "checkpoints"]
    for path in candidates:
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return path
    return None


def run_schedule(
    config: Config,
    resume: bool = False,
    only_phase: int | None = None,
    ds_config: dict[str, Any] | None = None,
    context: DistributedContext = DistributedContext(),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train every phase of the schedule (or only ``only_phase``) and write the run's metrics.

    A folder that already holds a run is continued only with ``resume`` (or ``only_phase``) and
    replaced only with ``overwrite``; otherwise ValueError, before anything is written.

    Each phase after the first starts from the previous phase's best checkpoint. With ``resume``,
    finished phases are kept and an interrupted one continues from its ``last.pt``. The final model,
    one checkpoint holding every step, is ``<out>/checkpoints/best.pt``.

    Each phase writes a ``selection.json`` beside its metrics (:mod:`llamareg.training.selection`); a run
    of several phases also writes ``<out>/selection.json`` listing every phase: the validation pairs
    that chose each best checkpoint and each next phase's start, and the data's test pairs, which no
    phase reads.

    The whole run is one MLflow run (see ``config.tracking``) and, for a cascade, each phase a nested
    child run. With ``ds_config`` every phase trains with a DeepSpeed engine on ``context``'s ranks
    (the DeepSpeed config is logged too); rank 0 alone writes metrics and exported checkpoints.
    """
    phases = plan_phases(config)
    if only_phase is not None and not 1 <= only_phase <= len(phases):
        raise ValueError(f"--step {only_phase} is out of range: this schedule has phases 1..{len(phases)}")
    if resume and not any(resume_point_exists(p.out / "checkpoints") for p in phases):
        raise FileNotFoundError(
            f"--resume: {phases[0].out / 'checkpoints'} holds no checkpoint to resume; "
            "start without --resume or point --out at an earlier run"
        )
    check_out_folder(config.train.out)
    earlier_run = existing_run(config, phases)
    if earlier_run is not None and not (resume or only_phase is not None or overwrite):
        raise ValueError(
            f"--out {config.train.out} already holds a run ({earlier_run}); continue it with --resume, "
            "replace it with --overwrite, or give another --out"
        )
    first_resume_point = phases[0].out / "checkpoints" / LAST_FILE
    if resume and _finished(phases[0]) is not None and first_resume_point.is_file():
        # A finished first phase is not resumed, so its trainer does not check the config: changed model or
        # data overrides would be ignored. (An unfinished one is checked when its trainer resumes it.)
        check_resume_config(read_checkpoint(first_resume_point)["config"], _phase_config(config, phases[0]), first_resume_point.parent)
    check_llm_source(config)  # before the tracking run creates the output folder
    check_data_source(config)
    run = open_training_run(config.tracking, config.train.out, config.name, resume or only_phase is not None)
    try:
        metrics = _run_phases(config, phases, resume, only_phase, run, ds_config, context)
    except BaseException:
        run.finish(failed=True)
        raise
    run.finish()
    return metrics


def _run_phases(
    config: Config,
    phases: list[Phase],
    resume: bool,
    only_phase: int | None,
    run: TrainingRun,
    ds_config: dict[str, Any] | None,
    context: DistributedContext,
) -> dict[str, Any]:
    out = Path(config.train.out)
    run.log_params({**config.to_dict(), "ranks": context.world_size, "deepspeed": ds_config is not None})
    run.set_tags({"architecture": config.model.architecture})
    if ds_config is not None:
        run.log_dict(ds_config, "ds_config.json")
    if run.enabled:
        config_file = out / "config.yaml"
        with atomic_output(config_file) as temporary:
            temporary.write_text(config.to_yaml())
        run.log_artifact(config_file)
    # Enough pairs for the longest phase on every rank: iterations x accumulation x ranks batches.
    batches = max(p.iterations for p in phases) * config.train.grad_accumulation * context.world_size
    longest = dataclasses.replace(config, train=dataclasses.replace(config.train, max_iters=batches))
    datasets = functools.cache(lambda: build_pair_datasets(longest))  # built once, after the first model
    summaries: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    for phase in phases:
        if only_phase is not None and phase.number > only_phase:
            break
        earlier = only_phase is not None and phase.number < only_phase
        done = _finished(phase) if (resume or earlier) else None
        if earlier and done is None:
            raise ValueError(f"--step {only_phase} needs phase {phase.number} finished first ({phase.out}/metrics.json)")
        if done is None:
            phase_run = run if len(phases) == 1 else run.child(phase.run_name, phase.out, resume)
            metrics = _train_phase(config, phase, phases, datasets, resume, phase_run, ds_config, context)
            if phase_run is not run:
                phase_run.finish()
        else:
            metrics = done
        summaries.append({"step": phase.number, **{key: metrics.get(key) for key in STEP_SUMMARY_KEYS}})
        if len(phases) > 1:
            run.log_metrics(
                {"val_dice_best": metrics.get("val_dice_best"), "val_folding_pct": metrics.get("val_folding_pct")}, phase.number
            )
    if len(phases) > 1 and context.is_main:
        final = phases[len(summaries) - 1]
        with atomic_output(out / "checkpoints" / "best.pt") as temporary:
            shutil.copyfile(final.out / "checkpoints" / "best.pt", temporary)
    metrics = {**metrics, "name": config.name, "schedule": config.train.schedule, "steps": summaries}
    if context.is_main:
        write_json(out / "metrics.json", metrics)
        if len(phases) > 1:
            write_json(out / SELECTION_FILE, _run_selection(config, phases[: len(summaries)]))
    context.barrier()
    if len(phases) > 1:
        run.log_artifact(out / "metrics.json")
        run.set_tags({"best_checkpoint": (out / "checkpoints" / "best.pt").resolve()})
    return metrics


def _run_selection(config: Config, phases: list[Phase]) -> dict[str, Any]:
    """The run's ``selection.json``: every phase's entry from its own ``selection.json`` (a phase trained
    before these files existed has none and is listed as unrecorded, with no pairs)."""
    entries = []
    for phase in phases:
        path = phase.out / SELECTION_FILE
        if path.is_file():
            entries += [{**entry, "phase": phase.run_name, "folder": phase.out.name} for entry in json.loads(path.read_text())["phases"]]
        else:
            entries.append(
                {
                    "phase": phase.run_name,
                    "folder": phase.out.name,
                    "unrecorded": True,
                    "validation_pairs": [],
                    "best_chosen_on": [],
                    "started_from": None,
                }
            )
    return selection_record(config, data_roles(config), entries)


def _train_phase(
    config: Config,
    phase: Phase,
    phases: list[Phase],
    datasets: Callable,
    resume: bool,
    run: TrainingRun,
    ds_config: dict[str, Any] | None,
    context: DistributedContext,
) -> dict[str, Any]:
    phase_config = _phase_config(config, phase)
    torch.manual_seed(config.train.seed + phase.number - 1)
    model = build_model(phase_config)  # before the data: a bad LLM source fails fast
    train_pairs, val_pairs = datasets()
    start = None
    if phase.number > 1:
        previous = phases[phase.number - 2]
        path = previous.out / "checkpoints" / "best.pt"
        new_steps = tuple(f"steps.{i}." for i in range(previous.model_steps, phase.model_steps))
        payload = read_checkpoint(path)
        load_model_state(model, payload, str(path), new_prefixes=new_steps)
        start = started_from(path, payload, Path(config.train.out))
    select_trainable(model, phase)
    llm = getattr(model, "llm", None)
    if phase.declared is not None:
        what = dict(phase.declared.trains)
    elif llm is not None:
        what = {"trainable_steps": sorted(i + 1 for i in phase.trainable), "llm_layer_indices": list(getattr(llm, "layer_indices", ()))}
    else:
        what = {}
    run.log_params({"phase": phase.number, **what, **model.parameter_counts()})
    tags = {"architecture": config.model.architecture}
    if llm is not None:
        tags.update({"llm_source": config.llm.source, "llm_fingerprint": getattr(llm, "fingerprint", "")})
    run.set_tags(tags)
    trainer = Trainer(phase_config, model, train_pairs, val_pairs, run, ds_config, context, started_from=start, phase_name=phase.run_name)
    if resume and resume_point_exists(phase.out / "checkpoints"):
        trainer.resume()
    return trainer.fit()
