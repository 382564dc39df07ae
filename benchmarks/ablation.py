"""The paper's ablations as one study: which part of LLaMA-Reg's token block carries its accuracy.

Six variants of ``cpu-default`` (SmolLM2-135M's last layer called twice between the adapters), trained
with the same data, budget and seeds by ``benchmarks/compare.py`` and scored on the same dev-test pairs
(anatomy no training or validation pair used), with identity and ANTs SyN measured in the same run:

* ``llamareg``: the pretrained layers, frozen (the reference every other variant is compared with);
* ``llamareg-random-frozen``: the same layers with random weights, frozen (``cpu-random-llm``);
* ``llamareg-random-trained``: random weights trained with the rest (``cpu-random-llm-trained``,
  ``llm.trainable=true``; the paper's memory figure, 10474 vs 7632 MB, implies its random layers trained);
* ``llamareg-vit``: two trainable ViT blocks instead of the LLM (``cpu-vit``);
* ``llamareg-posemb``: with the learnable positional embedding (``cpu-posemb``; ``cpu-default`` has none);
* ``llamareg-inner-x4``: the inner adapter four times the hidden size wide (``cpu-inner-x4``).

Each comparison is ``variant - llamareg``: a negative difference whose interval excludes 0 means the
pretrained frozen layers did better. Every argument of compare.py applies (``--iters``, ``--seeds``,
``--pairs``, ``--tiny``, ``--methods`` to run a subset).

Usage:
    python benchmarks/ablation.py --out benchmarks/results/ablation --iters 1200 --seeds 3 --pairs 12 --validations 1
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the benchmarks folder is not a package)

VARIANTS = ("llamareg", "llamareg-random-frozen", "llamareg-random-trained", "llamareg-vit", "llamareg-posemb", "llamareg-inner-x4")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    return compare.main(["--methods", "identity", "ants-syn", *VARIANTS, "--reference", "llamareg", *arguments])


if __name__ == "__main__":
    sys.exit(main())
