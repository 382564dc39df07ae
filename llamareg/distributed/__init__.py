"""Running training on several ranks: process groups, DeepSpeed configs and engines."""

from llamareg.distributed.context import DistributedContext, init_distributed
from llamareg.distributed.ds_config import load_deepspeed_config

__all__ = ["DistributedContext", "init_distributed", "load_deepspeed_config"]
