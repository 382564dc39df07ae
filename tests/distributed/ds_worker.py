"""One rank of the 2-rank DeepSpeed tests (run by the `deepspeed` launcher, not collected by pytest).

Trains a tiny LLaMA-Reg around the real pretrained SmolLM2 layer for 2 iterations, reopens the
checkpoint in a fresh engine and trains to 4, then writes what the tests check to
``<out>/rank<r>.json``: losses, the objective on held-out pairs before and after, a checksum of
the trainable weights (gathered under ZeRO-3) right after saving and right after resuming and at
the end, whether the frozen LLM weights still equal the source's, and the per-rank element counts of the frozen LLM parameters.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llamareg.config import load_config  # noqa: E402
from llamareg.data.factory import build_pair_datasets  # noqa: E402
from llamareg.distributed import init_distributed, load_deepspeed_config  # noqa: E402
from llamareg.llm import load_llama_layers  # noqa: E402
from llamareg.models import build_model  # noqa: E402
from llamareg.training.trainer import Trainer  # noqa: E402

TINY = [
    "data.shape=[32, 32, 32]",
    "data.num_train_subjects=4",
    "data.num_val_subjects=3",
    "data.num_val_pairs=3",
    "model.base_channels=4",
    "model.adapter_width=32",
    "model.inner_adapter_width=32",
    "train.val_every=2",
    "train.log_every=1",
    "tracking.enabled=false",
    "train.lr=2e-3",
]


def checksum(state):
    return sum(float(t.double().abs().sum()) for t in state.values() if t.is_floating_point())


@torch.no_grad()
def held_out_loss(trainer, pairs):
    """The training objective on fixed held-out pairs (every rank runs them: ZeRO-3 forwards are collective)."""
    total = 0.0
    for index in range(len(pairs)):
        item = pairs[index]
        dtype = trainer.optimization.input_dtype
        moving, fixed = item["moving"][None].to(dtype), item["fixed"][None].to(dtype)
        total += float(trainer.objective(moving, fixed, trainer.optimization.forward(moving, fixed)["flows"])[0])
    return total / len(pairs)


def frozen_llm_report(model, dtype):
    """Per-rank element counts of the frozen LLM parameters, and whether they still equal the source's."""
    import deepspeed

    source = load_llama_layers("smollm2-135m", [-1])
    expected = {f"layers.{k}": v for k, v in source.layers.state_dict().items()}
    expected.update({f"final_norm.{k}": v for k, v in source.final_norm.state_dict().items()})
    held, total, unchanged = 0, 0, True
    for name, parameter in model.llm.named_parameters():
        full = getattr(parameter, "ds_numel", parameter.numel())
        total += full
        held += parameter.ds_tensor.numel() if hasattr(parameter, "ds_tensor") else parameter.numel()
        with deepspeed.zero.GatheredParameters([parameter]):
            unchanged &= torch.equal(parameter.data.cpu(), expected[name].to(dtype))
    return {"llm_elements_held": held, "llm_elements_total": total, "llm_unchanged": bool(unchanged)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ds", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--local_rank", type=int)
    args = parser.parse_args()
    context = init_distributed("cpu")
    base = load_config("cpu-default", [*TINY, f"train.out={args.out}"])
    ds_config, base = load_deepspeed_config(args.ds, base, context.world_size)
    report = {"rank": context.rank, "precision": base.train.precision}
    for phase, iterations in (("first", 2), ("resumed", 4)):
        config = load_config(
            "cpu-default", [*TINY, f"train.out={args.out}", f"train.max_iters={iterations}", f"train.precision={base.train.precision}"]
        )
        torch.manual_seed(0)
        model = build_model(config)
        train_pairs, val_pairs = build_pair_datasets(load_config("cpu-default", [*TINY, f"train.max_iters={4 * context.world_size}"]))
        trainer = Trainer(config, model, train_pairs, val_pairs, ds_config=ds_config, context=context)
        if phase == "first":
            report["held_out_loss_before"] = held_out_loss(trainer, val_pairs)
        if phase == "resumed":
            trainer.resume()
            report["resumed_at"] = trainer.iteration
            report["checksum_after_resume"] = checksum(trainer.optimization.trainable_state())
        metrics = trainer.fit()
        report[f"checksum_{phase}"] = checksum(trainer.optimization.trainable_state())
    report["held_out_loss_after"] = held_out_loss(trainer, val_pairs)
    report["losses"] = [entry["loss"] for entry in metrics["losses"]]
    report["grad_norms"] = [entry.get("grad_norm") for entry in metrics["losses"]]
    report["val_dice"] = metrics["val_dice"]
    report["zero_stage"] = trainer.optimization.zero_stage
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(base.train.precision, torch.float32)
    report.update(frozen_llm_report(model, dtype))
    report["finite"] = all(math.isfinite(x) for x in report["losses"])
    Path(args.out, f"rank{context.rank}.json").write_text(json.dumps(report))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
