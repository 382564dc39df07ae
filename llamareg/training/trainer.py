"""The training loop: one process or DeepSpeed ranks, periodic validation, best/last checkpoints, resume."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from tqdm import tqdm

from llamareg.atomic import write_json
from llamareg.config import Config
from llamareg.devices import resolve_device
from llamareg.distributed.context import DistributedContext
from llamareg.networks.memory_format import memory_format_of
from llamareg.tracking import TrainingRun, plot_training_curves
from llamareg.training.memory import peak_memory_mb, reset_peak_memory
from llamareg.training.objective import MultiScaleObjective, objective_images
from llamareg.training.optimization import DeepSpeedOptimization, LocalOptimization
from llamareg.training.selection import SELECTION_FILE, data_roles, phase_entry, selection_record
from llamareg.training.validation import evaluate_pairs, summarize

# Config sections that fix the architecture and the data; a resumed run must not change them, except
# keys that change only speed.
RESUME_FIXED_SECTIONS = ("llm", "model", "data")
RESUME_FREE_KEYS = {("model", "memory_format")}


def check_resume_config(saved: dict[str, Any], config: Config, where: Path) -> None:
    """ValueError naming the first ``llm``/``model``/``data`` key whose value in ``config`` differs from the
    ``saved`` config of the run in ``where``: a run resumes with its own model and data (iterations,
    learning rate and the like may change)."""
    current, defaults = config.to_dict(), Config().to_dict()
    for section in RESUME_FIXED_SECTIONS:
        for key, value in current[section].items():
            if (section, key) in RESUME_FREE_KEYS:
                continue
            # A key the saved config lacks (written before the key existed) had its default.
            if saved[section].get(key, defaults[section][key]) != value:
                raise ValueError(
                    f"--resume: {section}.{key} is {value!r} but {where} was trained with "
                    f"{saved[section].get(key)!r}; resume with the run's own config"
                )


def rank_examples(start_iteration: int, iterations: int, batch: int, accumulation: int, context: DistributedContext) -> list[int]:
    """The training examples one rank takes, in order, for iterations ``start_iteration..iterations-1``.

    Iteration t covers the global examples ``t*G .. (t+1)*G - 1`` (G = batch x accumulation x ranks);
    micro-batch m of rank r is the slice ``(m * ranks + r) * batch`` of it. With one rank and no
    accumulation, example i is simply iteration ``i // batch``.

    Example:
        >>> rank_examples(0, 2, batch=1, accumulation=1, context=DistributedContext(rank=1, world_size=2))
        [1, 3]
    """
    ranks, per_iteration = context.world_size, batch * accumulation * context.world_size
    return [
        t * per_iteration + (m * ranks + context.rank) * batch + b
        for t in range(start_iteration, iterations)
        for m in range(accumulation)
        for b in range(batch)
    ]


class Trainer:
    """Trains one model on a pair dataset and validates it on fixed held-out pairs.

    Pair ``i`` of ``train_pairs`` is the sample of training example ``i`` (see :func:`rank_examples`),
    so a resumed run sees exactly the pairs the interrupted one would have seen.

    Args:
        config: The run's configuration; ``config.train`` drives the loop.
        model: LLaMA-Reg or a baseline (``model.architecture``); only its parameters with ``requires_grad``
            are optimised.
        train_pairs: Dataset of training pairs with at least ``max_iters x batch_size x
            grad_accumulation x ranks`` items, or a stream of them (an ``IterableDataset``, e.g. from
            shards, already split by rank), of which that many are taken.
        val_pairs: Dataset of fixed validation pairs (split across ranks, results gathered).
        run: The MLflow run to log loss terms, validation metrics and artifacts to (none by default).
        ds_config: A resolved DeepSpeed config (:func:`llamareg.distributed.load_deepspeed_config`) to
            train with a DeepSpeed engine; None trains with Adam in this process.
        context: This process's rank among the ranks.
        started_from: What the model starts from when it is a previous phase's best checkpoint
            (:func:`llamareg.training.selection.started_from`), recorded in the checkpoints and
            ``selection.json``; None for a first phase.
        phase_name: The phase's name in ``selection.json`` (default: the output folder's name).

    Besides ``metrics.json`` the run writes ``selection.json`` (:mod:`llamareg.training.selection`): the
    identities of the pairs its validations read, which chose ``best.pt``, and of the data's test pairs,
    which it never reads. Every checkpoint carries ``validation_pairs`` (the pairs read so far),
    ``best_validation_pairs`` (those that chose the best one) and ``started_from``.
    """

    def __init__(
        self,
        config: Config,
        model: nn.Module,
        train_pairs: Dataset,
        val_pairs: Dataset,
        run: TrainingRun | None = None,
        ds_config: dict[str, Any] | None = None,
        context: DistributedContext = DistributedContext(),
        started_from: dict[str, Any] | None = None,
        phase_name: str | None = None,
    ) -> None:
        train = config.train
        needed = train.max_iters * train.batch_size * train.grad_accumulation * context.world_size
        if not isinstance(train_pairs, IterableDataset) and len(train_pairs) < needed:
            raise ValueError(
                f"train_pairs has {len(train_pairs)} items but max_iters x batch_size x grad_accumulation x ranks needs {needed}"
            )
        self.config = config
        self.context = context
        self.out = Path(config.train.out)
        self.device = resolve_device(config.train.device, "train.device", context.local_rank)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
        self.parameter_counts = model.parameter_counts()  # before ZeRO-3 partitions the tensors
        if train.flow_weight > 0 and config.data.source != "synth" and context.rank == 0:
            print(
                f"train.flow_weight={train.flow_weight} is left out: pairs from data.source={config.data.source!r} "
                "carry no true displacement (only synthetic pairs do)"
            )
        self.objective = MultiScaleObjective(train.similarity, train.reg_weight, train.scale_weights, train.label_weight, train.flow_weight)
        if ds_config is None:
            self.optimization = LocalOptimization(self.model, config, self.device)
        else:
            self.optimization = DeepSpeedOptimization(self.model, config, ds_config, context)
        self.precision = self.optimization.precision
        self.train_pairs = train_pairs
        self.val_pairs = val_pairs
        self.run = run or TrainingRun()
        self.iteration = 0
        self.best_dice = -math.inf
        self.best_iteration = 0
        self.initial = None  # validation of the starting model, kept across resumes
        self.history: list[dict[str, Any]] = []
        self.losses: list[dict[str, float]] = []
        self.previous_wall_seconds = 0.0
        # Which pairs validation read and which test pairs the data holds (checked before training: a broken
        # test pair list fails here, not after the run).
        self.roles = data_roles(config)
        self.started_from = started_from
        self.phase_name = phase_name or self.out.name
        self.validation_pairs: list[str] = []
        self.best_validation_pairs: list[str] = []

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    # ----------------------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        """Everything but weights and optimizer: config, LLM identity, progress and history."""
        return {
            "config": self.config.to_dict(),
            "llm_source": self._llm_identity()[0],
            "llm_fingerprint": self._llm_identity()[1],
            "iteration": self.iteration,
            "best_dice": self.best_dice,
            "best_iteration": self.best_iteration,
            "initial": self.initial,
            "history": self.history,
            "losses": self.losses,
            "wall_seconds": self._wall_seconds(),
            "validation_pairs": self.validation_pairs,
            "best_validation_pairs": self.best_validation_pairs,
            "started_from": self.started_from,
        }

    def _llm_identity(self) -> tuple[str | None, str | None]:
        """The token block's source and fingerprint; (None, None) for a model without one (a baseline)."""
        llm = getattr(self.model, "llm", None)
        return (None, None) if llm is None else (llm.source, llm.fingerprint)

    def resume(self) -> None:
        """Continue from the last checkpoint: weights, optimizer, scaler, iteration, history."""
        state = self.optimization.resume(self.checkpoint_dir, self._check_resumable)
        self.iteration = state["iteration"]
        self.best_dice, self.best_iteration = state["best_dice"], state["best_iteration"]
        self.initial = state["initial"]
        self.history, self.losses = state["history"], state["losses"]
        self.previous_wall_seconds = state["wall_seconds"]
        # Checkpoints written before these keys existed lack them.
        self.validation_pairs = list(state.get("validation_pairs") or [])
        self.best_validation_pairs = list(state.get("best_validation_pairs") or [])
        if self.started_from is None:
            self.started_from = state.get("started_from")

    def _check_resumable(self, state: dict[str, Any]) -> None:
        check_resume_config(state["config"], self.config, self.checkpoint_dir)

    # ----------------------------------------------------------------------------- loop
    def _loader(self, items: Dataset, batch_size: int) -> DataLoader:
        return DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=self.config.data.num_workers)

    def _training_batches(self) -> Iterable[dict[str, Any]]:
        """This rank's batches from the current iteration on, up to ``max_iters``.

        A map-style dataset resumes exactly where it stopped. A stream cannot seek: one with a
        ``starting_at`` method is reseeded by the example count (reproducible, but other pairs than an
        uninterrupted run); any other stream is read from its beginning.
        """
        train = self.config.train
        if not isinstance(self.train_pairs, IterableDataset):
            examples = rank_examples(self.iteration, train.max_iters, train.batch_size, train.grad_accumulation, self.context)
            return self._loader(Subset(self.train_pairs, examples), train.batch_size)
        start = self.iteration * train.batch_size * train.grad_accumulation
        stream = self.train_pairs.starting_at(start) if hasattr(self.train_pairs, "starting_at") else self.train_pairs
        return itertools.islice(self._loader(stream, train.batch_size), (train.max_iters - self.iteration) * train.grad_accumulation)

    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
        """One batch forward and backward; returns its loss terms (on the device, not yet read: no
        host-device sync per iteration) and whether the optimizer stepped."""
        dtype = self.optimization.input_dtype
        moving, fixed = batch["moving"].to(self.device, dtype), batch["fixed"].to(self.device, dtype)
        flows = self.optimization.forward(moving, fixed)["flows"]
        # Synthetic pairs carry their labels and true displacement at full resolution; the extra terms
        # apply only to a flow of that resolution (not while LapIRN trains a coarse level).
        full = flows[-1].shape[2:] == moving.shape[2:]
        labels = true_flow = None
        if full and self.objective.label_weight > 0:
            labels = (batch["moving_labels"].to(self.device), batch["fixed_labels"].to(self.device))
        if full and self.objective.flow_weight > 0 and "flow" in batch:
            true_flow = batch["flow"].to(self.device)
        # The pair at the finest flow's resolution: the input itself unless LapIRN trains a coarse level.
        loss, terms = self.objective(
            *objective_images(moving, fixed, flows), flows, full_size=moving.shape[2:], labels=labels, true_flow=true_flow
        )
        stepped = self.optimization.backward_and_step(loss)
        grad_norm = self.optimization.grad_norm if stepped else None
        if grad_norm is not None:
            terms = {**terms, "grad_norm": grad_norm}
        return terms, stepped

    def _read_terms(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The loss terms as floats (this waits for the device); a non-finite loss stops the run before
        anything is logged or saved."""
        values = {name: value.item() for name, value in terms.items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(
                f"loss became {values['loss']} by iteration {self.iteration}; lower train.lr or use train.precision=fp32"
            )
        return values

    def _validate(self) -> dict[str, Any]:
        """Each rank registers every ranks-th pair; the records are gathered, so all ranks agree.

        Ranks with a pair fewer repeat one and drop its record: under ZeRO-3 every forward is a
        collective, so all ranks must run the same number.
        """
        count, ranks = len(self.val_pairs), self.context.world_size
        mine = list(range(self.context.rank, -(-count // ranks) * ranks, ranks))
        shown = Subset(self.val_pairs, [index % count for index in mine])
        records = evaluate_pairs(
            self.optimization.evaluation_network, self._loader(shown, 1), self.device, self.precision, self.optimization.input_dtype
        )
        kept = {index: record for index, record in zip(mine, records) if index < count}
        merged: dict[int, dict[str, Any]] = {}
        for part in self.context.gather(kept):
            merged.update(part)
        records = [merged[index] for index in sorted(merged)]
        read = [record["pair"] if record["pair"] is not None else f"validation item {index}" for index, record in enumerate(records)]
        self.validation_pairs += [pair for pair in read if pair not in self.validation_pairs]
        return summarize(records)

    def _wall_seconds(self) -> float:
        return self.previous_wall_seconds + time.perf_counter() - self._started

    def fit(self) -> dict[str, Any]:
        """Train up to ``config.train.max_iters`` and write ``metrics.json`` and the checkpoints."""
        self._started = time.perf_counter()
        train = self.config.train
        self.peak_memory_is_per_phase = reset_peak_memory(self.device)
        if self.initial is None:
            # The starting model is a candidate too: a cascade step starts from the previous step's
            # result, and its best checkpoint must never be worse than that.
            self.initial = self._validate()
            self.history.append({"iteration": 0, **self.initial})
            self._log_validation(self.initial)
            if self._record_best(self.initial):
                self.optimization.save_best(self._state(), self.checkpoint_dir)
        step_seconds = 0.0
        steps_done = 0
        progress = tqdm(
            total=train.max_iters,
            initial=self.iteration,
            desc=self.config.name,
            unit="it",
            dynamic_ncols=True,
            disable=not self.context.is_main,
        )
        with progress:
            for batch in self._training_batches():
                tick = time.perf_counter()
                terms, stepped = self._train_step(batch)
                step_seconds += time.perf_counter() - tick
                if not stepped:
                    continue
                steps_done += 1
                self.iteration += 1
                progress.update(1)
                last = self.iteration == train.max_iters or self._out_of_time()
                validate = self.iteration % train.val_every == 0 or last
                checkpoint = validate or (train.checkpoint_every and self.iteration % train.checkpoint_every == 0)
                if self.iteration % train.log_every == 0 or checkpoint:
                    values = self._read_terms(terms)
                    self.losses.append({"iteration": self.iteration, **values})
                    self.run.log_metrics({**values, "seconds_per_iteration": step_seconds / steps_done}, self.iteration)
                    progress.set_postfix(loss=f"{values['loss']:.4g}", best_dice=f"{max(self.best_dice, 0):.3f}")
                if validate:
                    self._validate_and_checkpoint()
                elif checkpoint:
                    self.optimization.save(self._state(), self.checkpoint_dir, best=False)
                if last:
                    break
        return self._write_metrics(step_seconds / max(steps_done, 1))

    def _out_of_time(self) -> bool:
        """Whether ``train.max_minutes`` of training wall time are spent (on any rank: all stop together)."""
        limit = self.config.train.max_minutes
        return bool(limit) and any(self.context.gather(self._wall_seconds() >= 60 * limit))

    def _record_best(self, result: dict[str, Any]) -> bool:
        """Note ``result`` as the best so far if its Dice is higher; returns whether it was."""
        if result["dice"] <= self.best_dice:
            return False
        self.best_dice, self.best_iteration = result["dice"], self.iteration
        self.best_validation_pairs = list(self.validation_pairs)
        return True

    def _validate_and_checkpoint(self) -> None:
        result = self._validate()
        self.history.append({"iteration": self.iteration, **result})
        self._log_validation(result)
        improved = self._record_best(result)
        self.optimization.save(self._state(), self.checkpoint_dir, best=improved)

    def _log_validation(self, result: dict[str, Any]) -> None:
        self.run.log_metrics(
            {
                "val_dice": result["dice"],
                "val_dice_identity": result["dice_identity"],
                "val_folding_pct": result["folding_pct"],
                "val_sdlogj_l2r": result["sdlogj_l2r"],
                **{f"val_dice_label_{k}": v for k, v in result["dice_per_label"].items()},
            },
            self.iteration,
        )

    def _write_metrics(self, seconds_per_iteration: float) -> dict[str, Any]:
        final = self.history[-1]
        metrics = {
            "name": self.config.name,
            "iterations": self.iteration,
            "stopped_by": "max_iters" if self.iteration >= self.config.train.max_iters else "max_minutes",
            "val_dice_identity": self.initial["dice_identity"],
            "val_dice_initial": self.initial["dice"],
            "val_dice": final["dice"],
            "val_dice_per_label": final["dice_per_label"],
            "val_folding_pct": final["folding_pct"],
            "val_sdlogj_l2r": final["sdlogj_l2r"],
            "val_dice_best": self.best_dice,
            "best_iteration": self.best_iteration,
            "validation_curve": [[entry["iteration"], entry["dice"]] for entry in self.history],
            "val_pairs": final["pairs"],
            "final_loss": self.losses[-1]["loss"] if self.losses else None,
            "wall_seconds": self._wall_seconds(),
            "train_seconds_per_iteration": seconds_per_iteration,
            "peak_memory_mb": peak_memory_mb(self.device),
            "peak_memory_of": "phase" if self.peak_memory_is_per_phase else "process",
            "parameters": self.parameter_counts,
            "architecture": self.config.model.architecture,
            "llm": (
                None
                if self._llm_identity()[0] is None
                else {"source": self._llm_identity()[0], "layers": self.config.llm.layers, "calls": self.config.llm.calls}
            ),
            "device": str(self.device),
            "precision": self.optimization.precision_name,
            "memory_format": memory_format_of(self.model),
            "ranks": self.context.world_size,
            "history": self.history,
            "losses": self.losses,
        }
        if self.context.is_main:
            write_json(self.out / "metrics.json", metrics)
            write_json(self.out / SELECTION_FILE, self.selection())
            self._log_outcome(metrics)
        self.context.barrier()
        return metrics

    def selection(self) -> dict[str, Any]:
        """This phase's ``selection.json`` (see :func:`llamareg.training.selection.selection_record`)."""
        entry = phase_entry(
            self.phase_name, self.validation_pairs, self.best_iteration, self.best_dice, self.best_validation_pairs, self.started_from
        )
        return selection_record(self.config, self.roles, [entry])

    def _log_outcome(self, metrics: dict[str, Any]) -> None:
        """Final figures, metrics.json, the training-curve figure and the best checkpoint (or its path)."""
        if not self.run.enabled:
            return
        self.run.log_metrics(
            {key: metrics[key] for key in ("val_dice_best", "train_seconds_per_iteration", "peak_memory_mb", "wall_seconds")},
            self.iteration,
        )
        self.run.log_artifact(self.out / "metrics.json")
        self.run.log_artifact(plot_training_curves(metrics, self.out / "training_curves.png"))
        best = self.checkpoint_dir / "best.pt"
        self.run.set_tags({"best_checkpoint": best.resolve()})
        if self.config.tracking.log_checkpoint:
            self.run.log_artifact(best, "checkpoints")
