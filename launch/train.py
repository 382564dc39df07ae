#!/usr/bin/env python
"""Train LLaMA-Reg: ``python launch/train.py [--config PRESET_OR_YAML] [--out DIR] [key=value ...]``."""

import sys
from pathlib import Path

# Run from a source checkout without installing: the repository root holds the llamareg package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llamareg.commands.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
