"""How a trainer updates its model: plain Adam in this process, or a DeepSpeed engine across ranks.

Both give the trainer the same five operations (forward, backward-and-step, save, resume, the
trainable weights), so the training loop, validation and bookkeeping are one piece of code.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from llamareg.atomic import atomic_output
from llamareg.config import Config
from llamareg.distributed.context import DistributedContext
from llamareg.networks.memory_format import contiguous_weights
from llamareg.training.checkpoint import load_model_state, read_checkpoint, save_checkpoint, trainable_state
from llamareg.training.precision import Precision

LAST_FILE = "last.pt"
BEST_FILE = "best.pt"
DEEPSPEED_FOLDER = "deepspeed"
LATEST_FILE = "latest"
INPUT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def resume_point_exists(checkpoint_dir: Path) -> bool:
    """Whether ``checkpoint_dir`` holds a run to resume (a single-process ``last.pt`` or a DeepSpeed one)."""
    return (checkpoint_dir / LAST_FILE).is_file() or (checkpoint_dir / DEEPSPEED_FOLDER / LATEST_FILE).is_file()


def _missing(checkpoint_dir: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"--resume: {checkpoint_dir} holds no {LAST_FILE} or {DEEPSPEED_FOLDER}/{LATEST_FILE}; "
        "start without --resume or point --out at an earlier run"
    )


class LocalOptimization:
    """Adam with autocast and a dynamic loss scaler (fp16), in this process.

    Checkpoints are single files: ``last.pt`` (weights, optimizer, scaler, trainer state) for
    resuming and ``best.pt`` for the best validation Dice. Before each step the unscaled gradients'
    global norm is measured (``grad_norm``) and clipped to ``train.grad_clip`` when that is set.
    """

    def __init__(self, model: nn.Module, config: Config, device: torch.device) -> None:
        self.model = model
        # compiled or not, the weights are the model's own (its state dict has no "_orig_mod." prefix)
        self.network = torch.compile(model) if config.train.compile else model
        self.evaluation_network = model  # validation runs uncompiled: no second compilation for eval mode
        self.precision = Precision.resolve(config.train.precision, device)
        self.precision_name = self.precision.name
        self.input_dtype = torch.float32  # autocast casts inside the model
        # fused: one kernel for all tensors; on the CPU about 4x faster per step than the per-tensor loop
        self.parameters = list(model.trainable_parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=config.train.lr, fused=True)
        self.max_grad_norm = config.train.grad_clip or math.inf  # inf: clip_grad_norm_ only measures
        self.grad_norm: torch.Tensor | None = None
        self.scaler = self.precision.grad_scaler()
        self.accumulation = config.train.grad_accumulation
        self.micro_steps = 0

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, Any]:
        with self.precision.autocast():
            return self.network(moving, fixed)

    def backward_and_step(self, loss: torch.Tensor) -> bool:
        """Add ``loss``'s gradients; step the optimizer once ``grad_accumulation`` batches are in."""
        self.scaler.scale(loss / self.accumulation).backward()
        self.micro_steps += 1
        if self.micro_steps % self.accumulation:
            return False
        self.scaler.unscale_(self.optimizer)  # the norm and the clip apply to the true gradients
        self.grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.model)

    def save(self, state: dict[str, Any], checkpoint_dir: Path, best: bool) -> None:
        payload = {**state, "model": self.trainable_state(), "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}
        if best:
            save_checkpoint(payload, checkpoint_dir / BEST_FILE)
        save_checkpoint(payload, checkpoint_dir / LAST_FILE)

    def save_best(self, state: dict[str, Any], checkpoint_dir: Path) -> None:
        save_checkpoint({**state, "model": self.trainable_state()}, checkpoint_dir / BEST_FILE)

    def resume(self, checkpoint_dir: Path, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Load the resume point after ``check`` has accepted its trainer state (config, progress)."""
        path = checkpoint_dir / LAST_FILE
        if not path.is_file():
            raise _missing(checkpoint_dir)
        payload = read_checkpoint(path)
        check(payload)
        load_model_state(self.model, payload, str(path))
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        return payload


class DeepSpeedOptimization:
    """A DeepSpeed engine (ZeRO stage, precision, optimizer and batch sizes from its JSON config).

    Resume points are DeepSpeed checkpoints in ``checkpoints/deepspeed/<tag>`` (each rank writes its
    own optimizer partition; the frozen LLM is left out, it is reloaded from its source). The
    ``latest`` file is written last and atomically by rank 0 after every rank has finished, so a run
    killed while saving resumes from the previous complete checkpoint. ``best.pt`` is the exported
    single-file model that ``llamareg register`` / ``evaluate`` and later cascade steps load. The
    engine clips gradients itself (``gradient_clipping``, set from ``train.grad_clip``).
    """

    def __init__(self, model: nn.Module, config: Config, ds_config: dict[str, Any], context: DistributedContext) -> None:
        import deepspeed

        self.context = context
        contiguous_weights(model)
        self.engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.trainable_parameters(), config=ds_config)
        if config.train.compile:
            self.engine.compile()
        self.network = self.evaluation_network = self.engine  # under ZeRO-3 every forward goes through the engine
        self.precision = Precision.resolve("fp32", self.engine.device)  # the engine casts; no autocast on top
        self.precision_name = config.train.precision
        self.input_dtype = INPUT_DTYPES[config.train.precision]
        self.zero_stage = self.engine.zero_optimization_stage()

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict[str, Any]:
        return self.engine(moving, fixed)

    @property
    def grad_norm(self) -> torch.Tensor | None:
        """The global gradient norm of the last step, as the engine measured it (None before one)."""
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else torch.as_tensor(norm, dtype=torch.float32)

    def backward_and_step(self, loss: torch.Tensor) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(loss)
        self.engine.step()
        return boundary

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The exportable weights in fp32, gathered from all ranks under ZeRO-3 (every rank must call)."""
        import deepspeed

        module = self.engine.module
        wanted = set(trainable_state(module))
        parameters = [p for name, p in module.named_parameters() if name in wanted]
        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=None):
            return {
                name: (tensor.detach().float() if tensor.is_floating_point() else tensor.detach()).cpu().clone()
                for name, tensor in module.state_dict().items()
                if name in wanted
            }

    def save(self, state: dict[str, Any], checkpoint_dir: Path, best: bool) -> None:
        if best:
            self.save_best(state, checkpoint_dir)
        folder = checkpoint_dir / DEEPSPEED_FOLDER
        tag = f"iteration{state['iteration']:08d}"
        self.engine.save_checkpoint(str(folder), tag=tag, client_state=state, save_latest=False, exclude_frozen_parameters=True)
        self.context.barrier()  # every rank's partition is on disk before the checkpoint counts
        if self.context.is_main:
            with atomic_output(folder / LATEST_FILE) as temporary:
                temporary.write_text(tag)
            for older in folder.iterdir():
                if older.is_dir() and older.name != tag:
                    shutil.rmtree(older)
        self.context.barrier()

    def save_best(self, state: dict[str, Any], checkpoint_dir: Path) -> None:
        weights = self.trainable_state()
        if self.context.is_main:
            save_checkpoint({**state, "model": weights}, checkpoint_dir / BEST_FILE)
        self.context.barrier()

    def resume(self, checkpoint_dir: Path, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Load the resume point; ``check`` sees its trainer state after DeepSpeed has loaded it (the
        state travels inside DeepSpeed's files)."""
        folder = checkpoint_dir / DEEPSPEED_FOLDER
        if not (folder / LATEST_FILE).is_file():
            raise _missing(checkpoint_dir)
        tag = (folder / LATEST_FILE).read_text().strip()
        path, state = self.engine.load_checkpoint(str(folder), tag=tag, load_module_strict=False)
        if path is None:
            raise ValueError(f"--resume: DeepSpeed checkpoint {folder / tag} cannot be read; it is incomplete or from another run")
        check(state)
        return state
