"""The training loop: Adam, mixed precision, periodic validation, best/last checkpoints, resume."""

from __future__ import annotations

import itertools
import math
import resource
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from tqdm import tqdm

from llamareg.atomic import write_json
from llamareg.config import Config
from llamareg.networks.llamareg import LLaMAReg
from llamareg.tracking import TrainingRun, plot_training_curves
from llamareg.training.checkpoint import load_model_state, read_checkpoint, save_checkpoint, trainable_state
from llamareg.training.objective import MultiScaleObjective
from llamareg.training.precision import Precision
from llamareg.training.validation import evaluate

# Config sections that fix the architecture and the data; a resumed run must not change them.
RESUME_FIXED_SECTIONS = ("llm", "model", "data")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


class Trainer:
    """Trains one model on a pair dataset and validates it on fixed held-out pairs.

    Pair ``i`` of ``train_pairs`` is the sample of training example ``i`` (iteration ``i // batch``),
    so a resumed run sees exactly the pairs the interrupted one would have seen.

    Args:
        config: The run's configuration; ``config.train`` drives the loop.
        model: The model; only its parameters with ``requires_grad`` are optimised.
        train_pairs: Dataset of training pairs with at least ``max_iters * batch_size`` items, or a
            stream of them (an ``IterableDataset``, e.g. from shards), of which that many are taken.
        val_pairs: Dataset of fixed validation pairs.
        run: The MLflow run to log loss terms, validation metrics and artifacts to (none by default).
    """

    def __init__(
        self, config: Config, model: LLaMAReg, train_pairs: Dataset, val_pairs: Dataset, run: TrainingRun | None = None
    ) -> None:
        needed = config.train.max_iters * config.train.batch_size
        if not isinstance(train_pairs, IterableDataset) and len(train_pairs) < needed:
            raise ValueError(f"train_pairs has {len(train_pairs)} items but max_iters x batch_size needs {needed}")
        self.config = config
        self.out = Path(config.train.out)
        self.device = resolve_device(config.train.device)
        self.precision = Precision.resolve(config.train.precision, self.device)
        self.model = model.to(self.device)
        self.objective = MultiScaleObjective(config.train.similarity, config.train.reg_weight, config.train.scale_weights)
        self.optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.train.lr)
        self.scaler = self.precision.grad_scaler()
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

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    # ----------------------------------------------------------------------------- checkpoints
    def _payload(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": trainable_state(self.model),
            "llm_source": self.model.llm.source,
            "llm_fingerprint": self.model.llm.fingerprint,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "best_dice": self.best_dice,
            "best_iteration": self.best_iteration,
            "initial": self.initial,
            "history": self.history,
            "losses": self.losses,
            "wall_seconds": self._wall_seconds(),
        }

    def resume(self) -> None:
        """Continue from ``<out>/checkpoints/last.pt``: weights, optimizer, scaler, iteration, history."""
        path = self.checkpoint_dir / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {path} does not exist; start without --resume or point --out at an earlier run")
        payload = read_checkpoint(path)
        saved, current = payload["config"], self.config.to_dict()
        for section in RESUME_FIXED_SECTIONS:
            for key, value in current[section].items():
                if saved[section].get(key) != value:
                    raise ValueError(
                        f"--resume: {section}.{key} is {value!r} but {path} was trained with {saved[section].get(key)!r}; "
                        "resume with the run's own config"
                    )
        load_model_state(self.model, payload, str(path))
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.iteration = payload["iteration"]
        self.best_dice, self.best_iteration = payload["best_dice"], payload["best_iteration"]
        self.initial = payload["initial"]
        self.history, self.losses = payload["history"], payload["losses"]
        self.previous_wall_seconds = payload["wall_seconds"]

    # ----------------------------------------------------------------------------- loop
    def _loader(self, items: Dataset, batch_size: int) -> DataLoader:
        return DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=self.config.data.num_workers)

    def _training_batches(self, start: int) -> Any:
        """The batches from training example ``start`` on, up to ``max_iters``.

        A map-style dataset resumes exactly at ``start``. A stream cannot seek: one with a
        ``starting_at`` method is reseeded by ``start`` (reproducible, but other pairs than an
        uninterrupted run); any other stream is read from its beginning.
        """
        train = self.config.train
        if not isinstance(self.train_pairs, IterableDataset):
            return self._loader(Subset(self.train_pairs, range(start, train.max_iters * train.batch_size)), train.batch_size)
        stream = self.train_pairs.starting_at(start) if hasattr(self.train_pairs, "starting_at") else self.train_pairs
        return itertools.islice(self._loader(stream, train.batch_size), train.max_iters - self.iteration)

    def _train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        moving, fixed = batch["moving"].to(self.device), batch["fixed"].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            flows = self.model(moving, fixed)["flows"]
        loss, terms = self.objective(moving, fixed, flows)
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(f"loss became {terms['loss']} at iteration {self.iteration + 1}; lower train.lr or use train.precision=fp32")
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return terms

    def _validate(self) -> dict[str, Any]:
        return evaluate(self.model, self._loader(self.val_pairs, 1), self.device, self.precision)

    def _wall_seconds(self) -> float:
        return self.previous_wall_seconds + time.perf_counter() - self._started

    def fit(self) -> dict[str, Any]:
        """Train up to ``config.train.max_iters`` and write ``metrics.json`` and the checkpoints."""
        self._started = time.perf_counter()
        train = self.config.train
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.initial is None:
            # The starting model is a candidate too: a cascade step starts from the previous step's
            # result, and its best checkpoint must never be worse than that.
            self.initial = self._validate()
            self.history.append({"iteration": 0, **self.initial})
            self._log_validation(self.initial)
            if self._record_best(self.initial):
                save_checkpoint(self._payload(), self.checkpoint_dir / "best.pt")
        start = self.iteration * train.batch_size
        batches = self._training_batches(start)
        step_seconds = 0.0
        steps_done = 0
        progress = tqdm(total=train.max_iters, initial=self.iteration, desc=self.config.name, unit="it", dynamic_ncols=True)
        with progress:
            for batch in batches:
                tick = time.perf_counter()
                terms = self._train_step(batch)
                step_seconds += time.perf_counter() - tick
                steps_done += 1
                self.iteration += 1
                progress.update(1)
                if self.iteration % train.log_every == 0 or self.iteration == train.max_iters:
                    self.losses.append({"iteration": self.iteration, **terms})
                    self.run.log_metrics({**terms, "seconds_per_iteration": step_seconds / steps_done}, self.iteration)
                    progress.set_postfix(loss=f"{terms['loss']:.4g}", best_dice=f"{max(self.best_dice, 0):.3f}")
                if self.iteration % train.val_every == 0 or self.iteration == train.max_iters:
                    self._validate_and_checkpoint()
        return self._write_metrics(step_seconds / max(steps_done, 1))

    def _record_best(self, result: dict[str, Any]) -> bool:
        """Note ``result`` as the best so far if its Dice is higher; returns whether it was."""
        if result["dice"] <= self.best_dice:
            return False
        self.best_dice, self.best_iteration = result["dice"], self.iteration
        return True

    def _validate_and_checkpoint(self) -> None:
        result = self._validate()
        self.history.append({"iteration": self.iteration, **result})
        self._log_validation(result)
        improved = self._record_best(result)
        payload = self._payload()  # one snapshot for both files
        if improved:
            save_checkpoint(payload, self.checkpoint_dir / "best.pt")
        save_checkpoint(payload, self.checkpoint_dir / "last.pt")

    def _log_validation(self, result: dict[str, Any]) -> None:
        self.run.log_metrics(
            {"val_dice": result["dice"], "val_dice_identity": result["dice_identity"], "val_folding_pct": result["folding_pct"],
             "val_sdlogj": result["sdlogj"], **{f"val_dice_label_{k}": v for k, v in result["dice_per_label"].items()}},
            self.iteration,
        )

    def _peak_memory_mb(self) -> float:
        """Peak CUDA memory allocated in this fit, or on the CPU the process's peak resident memory."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _write_metrics(self, seconds_per_iteration: float) -> dict[str, Any]:
        final = self.history[-1]
        metrics = {
            "name": self.config.name,
            "iterations": self.iteration,
            "val_dice_identity": self.initial["dice_identity"],
            "val_dice_initial": self.initial["dice"],
            "val_dice": final["dice"],
            "val_dice_per_label": final["dice_per_label"],
            "val_folding_pct": final["folding_pct"],
            "val_sdlogj": final["sdlogj"],
            "val_dice_best": self.best_dice,
            "best_iteration": self.best_iteration,
            "val_pairs": final["pairs"],
            "final_loss": self.losses[-1]["loss"] if self.losses else None,
            "wall_seconds": self._wall_seconds(),
            "train_seconds_per_iteration": seconds_per_iteration,
            "peak_memory_mb": self._peak_memory_mb(),
            "parameters": self.model.parameter_counts(),
            "llm": {"source": self.model.llm.source, "layers": self.config.llm.layers, "calls": self.config.llm.calls},
            "device": str(self.device),
            "precision": self.precision.name,
            "history": self.history,
            "losses": self.losses,
        }
        write_json(self.out / "metrics.json", metrics)
        self._log_outcome(metrics)
        return metrics

    def _log_outcome(self, metrics: dict[str, Any]) -> None:
        """Final figures, metrics.json, the training-curve figure and the best checkpoint (or its path)."""
        if not self.run.enabled:
            return
        self.run.log_metrics({key: metrics[key] for key in ("val_dice_best", "train_seconds_per_iteration", "peak_memory_mb",
                                                             "wall_seconds")}, self.iteration)
        self.run.log_artifact(self.out / "metrics.json")
        self.run.log_artifact(plot_training_curves(metrics, self.out / "training_curves.png"))
        best = self.checkpoint_dir / "best.pt"
        self.run.set_tags({"best_checkpoint": best.resolve()})
        if self.config.tracking.log_checkpoint:
            self.run.log_artifact(best, "checkpoints")
