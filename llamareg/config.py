"""One configuration object, from a preset or YAML file plus ``key=value`` overrides.

The :class:`Config` built here flows unchanged from the entry point to the model, the data and the
trainer. Every key is declared in a dataclass below, so a misspelt key in a YAML file or on the
command line is an error instead of a silently ignored setting.

Example:
    >>> cfg = load_config("cpu-default", overrides=["train.max_iters=10", "model.base_channels=4"])
    >>> cfg.train.max_iters, cfg.model.base_channels
    (10, 4)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from llamareg.checks import check_shape, look_up_option

PRESET_PACKAGE = "llamareg.presets"


@dataclass
class LLMConfig:
    """Which pretrained LLaMA layers form the frozen block, and how they are called.

    Attributes:
        source: Hugging Face folder, Meta checkpoint folder, ``.gguf`` file, ``smollm2-135m`` (the
            embedded default) or ``random:<model>`` for same-shaped random weights.
        layers: Indices of the layers to load; negative indices count from the last layer.
        calls: Number of layer calls in the block. Call ``i`` uses ``layers[i % len(layers)]``, so
            ``layers=[-1], calls=2`` is the paper's "last layer twice".
        dtype: Storage and compute dtype of the frozen layers (``float32``, ``float16``, ``bfloat16``).
        hidden_size: Expected hidden size; a source whose hidden size differs is an error.
        final_norm: Apply the model's final RMSNorm after each call, as the public release does.
        lora_rank: 0 keeps the layers frozen; r >= 1 adds trainable LoRA factors of that rank (peft).
        lora_alpha: LoRA scaling numerator (scale = alpha / rank).
        lora_dropout: Dropout on the LoRA branch.
        lora_targets: Linear layers that get LoRA (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
        trainable: Train the layers' weights too (the optimizer gets them, checkpoints store them): the
            paper's "random and trained" ablation, whose memory figure (10474 vs 7632 MB) implies its random
            layers were trained. Needs ``dtype: float32`` and no LoRA.
    """

    source: str | None = "smollm2-135m"
    layers: list[int] = field(default_factory=lambda: [-1])
    calls: int = 2
    dtype: str = "float32"
    hidden_size: int | None = None
    final_norm: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    trainable: bool = False


# Registration networks ``model.architecture`` chooses: LLaMA-Reg, the baselines of issue 7
# (:mod:`llamareg.baselines`) and the voxelmorph PyPI package's own model (an optional dependency).
ARCHITECTURES = ("llamareg", "voxelmorph", "lapirn", "transmorph", "transmatch", "voxelmorph-package")


@dataclass
class ModelConfig:
    """The registration network: LLaMA-Reg around the LLM block, or a baseline.

    Attributes:
        architecture: ``llamareg`` (the paper's network, configured by the keys below) or a baseline:
            ``voxelmorph``, ``lapirn``, ``transmorph``, ``transmatch`` (written in
            :mod:`llamareg.baselines` from their papers) or ``voxelmorph-package`` (the voxelmorph PyPI
            package's ``VxmPairwise``; ``pip install -e .[compare]``). The LLaMA-Reg keys below do not
            apply to baselines, nor does the ``llm`` section.
        sizes: Constructor arguments of a baseline over its published configuration, e.g.
            ``{embed_dim: 24, depths: [2, 2, 4]}`` (see ``llamareg.baselines.CPU_SCALING``); empty for
            LLaMA-Reg.
        base_channels: C in the paper; encoder channels are C, 2C, 4C, 8C, 16C.
        adapter_width: Width of Adapter0's intermediate layer (paper: 1024).
        inner_adapter_width: Width of the adapter between two LLM calls (paper: 1024).
        positional_embedding: Add the learnable positional embedding to the tokens.
        shared_encoder: Run one encoder stream on both images (a Siamese encoder) instead of the
            paper's two streams without shared weights.
        flow_combination: ``compose`` (the paper: stage fields are composed) or ``add`` (the release).
        rescale_upsampled_flows: Multiply a flow's magnitude by the upsampling factor (correct for
            voxel-unit fields); the public release does not.
        diffeomorphic: Treat each stage output as a stationary velocity field and integrate it.
        integration_steps: Scaling-and-squaring steps for the diffeomorphic option.
        token_block: ``llm`` (the pretrained LLM layers) or ``vit`` (trainable ViT blocks, the
            paper's ablation; no LLM is loaded).
        vit_width: ViT token width (paper ablation: 4096).
        vit_heads: ViT attention heads (paper ablation: 4).
        vit_depth: ViT blocks (paper ablation: 2).
        steps: Cascaded decoding steps (paper: 3); see ``train.schedule``.
        memory_format: Layout of the 3D convolutions: ``auto`` (channels-last on the CPU and under
            fp16/bf16 on CUDA, contiguous for fp32 on CUDA), ``channels_last`` or ``contiguous``; same
            results, different speed (:mod:`llamareg.networks.memory_format`). Applies to baselines too.
    """

    architecture: str = "llamareg"
    sizes: dict[str, Any] = field(default_factory=dict)
    base_channels: int = 16
    adapter_width: int = 1024
    inner_adapter_width: int = 1024
    positional_embedding: bool = True
    shared_encoder: bool = False
    flow_combination: str = "compose"
    rescale_upsampled_flows: bool = True
    diffeomorphic: bool = False
    integration_steps: int = 7
    token_block: str = "llm"
    vit_width: int = 4096
    vit_heads: int = 4
    vit_depth: int = 2
    steps: int = 1
    memory_format: str = "auto"


@dataclass
class DataConfig:
    """Where training and validation pairs come from.

    Attributes:
        source: ``synth`` (the default: random synthetic shapes in the manner of SynthMorph, a fresh
            pair every iteration, validation on pairs of a seed stream of their own; see
            :mod:`llamareg.data.synth_anatomy`), ``template`` (subjects synthesised by warping the one
            MNI152 template shipped with nilearn: a network trained on it learns that template, so its
            results do not carry to other anatomy) or the path of a shard folder written by
            ``data_tools/build_shards.py`` (volumes streamed from its shards, validation on its
            ``val_pairs.json``; its ``test_pairs.json`` is never read in training).
        shape: Volume shape (D, H, W); each side divisible by 16. Also sets the positional grid. A
            shard folder's volumes must have this shape (its manifest says which).
        num_train_subjects: Synthetic training subjects (template source).
        num_val_subjects: Held-out synthetic subjects for validation (template source).
        num_val_pairs: Fixed validation pairs (synth: drawn from the validation seed stream; template:
            from the held-out subjects; a shard folder: the first this many of its ``val_pairs.json``).
        spacing_mm: Isotropic voxel size of the training volumes; ``register`` and ``evaluate`` resample
            images to it.
        max_displacement: Largest deformation of an image from its label map or template, in voxels.
        control_spacing: Voxels between that deformation's random velocity control points: larger is
            smoother.
        synth_labels: Labels of each synthetic label map (synth source; SynthMorph: 26).
        synth_shape_spacing: Voxels between the control points of the random fields whose arg-max
            forms a label map: the size of a synthetic shape.
        synth_shape_warp: Largest displacement (voxels) of each random field's own deformation.
        synth_aligned_fraction: Share of synthetic pairs that are already aligned (the same label map
            and deformation; only contrast and noise differ).
        synth_shared_contrast: Both images of a synthetic pair take the same intensity per label.
        seed: Seed of the synthetic subjects or pairs; kept apart from ``train.seed`` so that runs with
            different training seeds are validated on the same pairs.
        num_workers: DataLoader worker processes.
        shuffle_buffer: Shard folders: volumes each DataLoader worker holds to draw training pairs
            from; larger mixes better and takes more memory.
        shard_layout: The ``--layout`` a shard folder given as ``source`` must have been built with
            (``learn2reg`` for the paper's OASIS preset, ``oai`` for its knee presets); None takes any.
            Catches a preset trained on another dataset's shards.
    """

    source: str = "synth"
    shape: list[int] = field(default_factory=lambda: [64, 80, 64])
    num_train_subjects: int = 32
    num_val_subjects: int = 8
    num_val_pairs: int = 8
    spacing_mm: float = 2.5
    max_displacement: float = 8.0
    control_spacing: int = 16
    synth_labels: int = 26
    synth_shape_spacing: int = 8
    synth_shape_warp: float = 3.0
    synth_aligned_fraction: float = 0.2
    synth_shared_contrast: bool = True
    seed: int = 0
    num_workers: int = 0
    shuffle_buffer: int = 16
    shard_layout: str | None = None


@dataclass
class TrainConfig:
    """Optimisation, loss and bookkeeping.

    Attributes:
        out: Output folder (metrics.json, checkpoints/).
        max_iters: Training iterations.
        max_minutes: Also stop, validate and checkpoint at the first iteration past this many minutes
            of training wall time (validation included, a resumed run's earlier time too; each phase of
            a schedule on its own); 0 for no limit. ``metrics.json`` says which limit stopped the run.
        batch_size: Pairs per iteration and rank (paper: 1).
        grad_accumulation: Batches whose gradients add up to one optimizer step (one iteration).
        lr: Adam learning rate (paper: 1e-4).
        grad_clip: Scale the gradients down to this global L2 norm before an optimizer step whose norm
            is larger (0: never; the paper does not clip). It did not free the two-stream seed-2 stall
            (docs/model.md, "Shared encoder"). The norm before clipping is logged every ``log_every``
            iterations as ``grad_norm``.
        similarity: ``mse`` (paper) or ``ncc`` (local normalised cross-correlation).
        reg_weight: Diffusion regulariser weight lambda (paper: 0.04 knee, 0.02 brain).
        label_weight: Weight of a soft-Dice term on the warped training labels (0: images only, as in
            the paper; synthetic data have exact labels, SynthMorph trains on them).
        flow_weight: Weight of the mean squared end-point error against the true displacement, which
            synthetic pairs (``data.source=synth``) know (0: unsupervised, as in the paper). Other
            sources carry none, so the term is left out for them (the trainer says so once).
        scale_weights: Loss weights of the flows, coarsest first: LLaMA-Reg's 1/4, 1/2 and full-resolution
            flows (paper: 0.25/0.5/1.0); one weight for single-field baselines; LapIRN's three levels.
        precision: ``auto`` (fp16 AMP on CUDA; bf16 autocast on CPUs with bf16 units, else fp32), ``fp32``, ``bf16`` or ``fp16``.
        compile: Train the model through ``torch.compile`` (a DeepSpeed engine through its ``compile()``).
            The first iterations take longer while it compiles; on a 2-core CPU it gains nothing
            (benchmarks/results/compile/speed.md); on CUDA it is unmeasured. Validation, ``register``
            and ``evaluate`` run the model uncompiled.
        val_every: Validate (and keep the best checkpoint) every this many iterations.
        checkpoint_every: Also write the resume point (``last.pt``, or a DeepSpeed checkpoint) every
            this many iterations between validations, so that a killed run loses at most that much
            work (0: only at validation).
        log_every: Refresh the progress bar's loss every this many iterations.
        seed: Seed of model initialisation and of the pair sequence.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        schedule: How cascade steps train: ``step-by-step`` (step k with steps 1..k-1 frozen,
            starting from step k-1's best checkpoint) or ``joint`` (step 1, then all steps together
            with the shared encoder frozen). ``lapirn`` (LapIRN only): level by level as its release,
            five phases (level 1; level 2 with level 1 frozen; levels 1-2; level 3 with 1-2 frozen;
            levels 1-3), each starting from the previous phase's best checkpoint.
        step_iters: Iterations of each phase of the schedule (paper knee: 130000, 130000, 30000);
            empty means ``max_iters`` for every phase.
    """

    out: str = "runs/default"
    max_iters: int = 600
    max_minutes: float = 0.0
    batch_size: int = 1
    grad_accumulation: int = 1
    lr: float = 1e-4
    grad_clip: float = 0.0
    similarity: str = "mse"
    reg_weight: float = 0.04
    label_weight: float = 0.0
    flow_weight: float = 0.0
    scale_weights: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    precision: str = "auto"
    compile: bool = False
    val_every: int = 100
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    schedule: str = "step-by-step"
    step_iters: list[int] = field(default_factory=list)


@dataclass
class TrackingConfig:
    """MLflow tracking: one run per training run, one nested child run per cascade phase.

    Attributes:
        enabled: Whether to log to MLflow at all (only rank 0 logs).
        uri: Tracking URI; empty means ``MLFLOW_TRACKING_URI`` if set, else a sqlite file
            ``<train.out>/mlflow.db`` with artifacts in ``<train.out>/mlartifacts``.
        experiment: Experiment name; runs of different configs in one experiment compare side by side.
        log_checkpoint: Copy the best checkpoint into the run's artifacts (otherwise only its path is
            recorded, as a tag: a LLaMA-2-7B run's adapters alone are hundreds of MB).
    """

    enabled: bool = True
    uri: str = ""
    experiment: str = "llamareg"
    log_checkpoint: bool = False


@dataclass
class Config:
    """Everything one run needs; see the section classes for each key."""

    name: str = "custom"
    llm: LLMConfig = field(default_factory=LLMConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-serialisable, and safe for ``torch.load(weights_only=True)``)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def preset_names() -> list[str]:
    """Names of the presets shipped in ``llamareg/presets``."""
    folder = resources.files(PRESET_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(preset_or_path: str) -> tuple[dict[str, Any], str]:
    path = Path(preset_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; give a YAML file or one of the presets {preset_names()}")
        text, origin = path.read_text(), str(path)
    else:
        resource = resources.files(PRESET_PACKAGE) / f"{preset_or_path}.yaml"
        if not resource.is_file():
            raise ValueError(f"unknown preset '{preset_or_path}'; choose one of {preset_names()} or give a YAML file path")
        text, origin = resource.read_text(), f"preset {preset_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{origin} is not valid YAML: {error}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ValueError(f"{origin} must hold a mapping of config sections, got {type(data).__name__}")
    return data, origin


def _resolve_extends(preset_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a YAML mapping, merging it over the preset named by its optional ``extends`` key."""
    if preset_or_path in seen:
        raise ValueError(f"config 'extends' chain loops: {' -> '.join(seen + (preset_or_path,))}")
    data, _ = _read_yaml(preset_or_path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _deep_merge(_resolve_extends(parent, seen + (preset_or_path,)), data)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Validate ``value`` against a dataclass field annotation; ints are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except ValueError as error:
                errors.append(error)
        raise errors[0]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"config key '{key}' must be a mapping of names to values, got {value!r}")
        _, item_type = typing.get_args(annotation)
        if item_type is Any:
            return dict(value)
        return {k: _check_type(f"{key}.{k}", v, item_type) for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key '{key}' must be a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", item, item_type) for i, item in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, bool):
        raise ValueError(f"config key '{key}' must be an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ValueError(f"config key '{key}' must be of type {annotation.__name__}, got {value!r}")
    return value


def _build_section(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ValueError(f"unknown config key '{prefix + '.' if prefix else ''}{unknown[0]}' in {where}; known keys: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(hints[name]):
            if not isinstance(value, dict):
                raise ValueError(f"config key '{key}' must be a mapping of its own keys, got {value!r}")
            kwargs[name] = _build_section(hints[name], value, key)
        else:
            kwargs[name] = _check_type(key, value, hints[name])
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ValueError(f"override '{text}' must look like section.key=value, e.g. train.max_iters=100")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return ``data`` with each ``section.key=value`` override set (types are checked later)."""
    data = _deep_merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{text}': '{part}' is not a config section")
        node[path[-1]] = value
    return data


def load_config(preset_or_path: str = "cpu-default", overrides: Sequence[str] = ()) -> Config:
    """Build the run's :class:`Config` from a preset name or YAML path and overrides.

    Args:
        preset_or_path: A preset name (see :func:`preset_names`) or a YAML file; a YAML file may name a
            preset to start from with ``extends: <preset>``.
        overrides: ``section.key=value`` strings applied last; values are parsed as YAML.

    Raises:
        ValueError: unknown preset or key, or a value of the wrong type.
    """
    data = apply_overrides(_resolve_extends(preset_or_path), overrides)
    config = _build_section(Config, data, "")
    validate(config)
    return config


def config_from_dict(data: dict[str, Any]) -> Config:
    """The :class:`Config` a plain dict describes (e.g. one stored in a checkpoint), checked like a file.

    Keys the dict lacks take their defaults (a checkpoint written before they existed).
    """
    config = _build_section(Config, data, "")
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cross-field checks that a single type annotation cannot express."""
    check_shape(config.data.shape, "data.shape", multiple=16)
    if not config.data.source:
        raise ValueError("data.source must be 'synth', 'template' or the path of a shard folder, got an empty string")
    if config.data.num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {config.data.num_workers}")
    if config.data.shuffle_buffer < 2:
        raise ValueError(f"data.shuffle_buffer must be >= 2 (a pair needs two volumes), got {config.data.shuffle_buffer}")
    look_up_option(config.model.flow_combination, ("compose", "add"), "model.flow_combination")
    look_up_option(config.model.memory_format, ("auto", "contiguous", "channels_last"), "model.memory_format")
    look_up_option(config.model.token_block, ("llm", "vit"), "model.token_block")
    look_up_option(config.train.schedule, ("step-by-step", "joint", "lapirn"), "train.schedule")
    if config.model.steps < 1:
        raise ValueError(f"model.steps must be >= 1, got {config.model.steps}")
    look_up_option(config.llm.dtype, ("float32", "float16", "bfloat16"), "llm.dtype")
    if config.llm.calls < 1 or not config.llm.layers:
        raise ValueError("llm.calls must be >= 1 and llm.layers must name at least one layer")
    if config.llm.trainable and (config.llm.dtype != "float32" or config.llm.lora_rank):
        raise ValueError(
            "llm.trainable=true needs llm.dtype=float32 and llm.lora_rank=0 (Adam's updates are lost in "
            f"16-bit weights, and LoRA is the frozen alternative), got {config.llm.dtype} and rank {config.llm.lora_rank}"
        )
    look_up_option(config.train.precision, ("auto", "fp32", "bf16", "fp16"), "train.precision")
    look_up_option(config.train.device, ("auto", "cpu", "cuda"), "train.device")
    _validate_architecture(config)
    for key in ("max_iters", "batch_size", "grad_accumulation", "val_every", "log_every"):
        if getattr(config.train, key) < 1:
            raise ValueError(f"train.{key} must be >= 1, got {getattr(config.train, key)}")
    if not (math.isfinite(config.train.max_minutes) and config.train.max_minutes >= 0):
        raise ValueError(f"train.max_minutes must be >= 0 (0: no limit), got {config.train.max_minutes}")
    if not (math.isfinite(config.train.lr) and config.train.lr > 0):
        raise ValueError(f"train.lr must be a positive learning rate, got {config.train.lr}")
    for key in ("label_weight", "flow_weight", "checkpoint_every", "reg_weight", "grad_clip"):
        if getattr(config.train, key) < 0:
            raise ValueError(f"train.{key} must be >= 0, got {getattr(config.train, key)}")
    if config.model.base_channels < 1:
        raise ValueError(f"model.base_channels must be >= 1, got {config.model.base_channels}")


def flow_count(config: Config) -> int:
    """How many displacement fields the configured network returns (one scale weight each)."""
    architecture = config.model.architecture
    if architecture == "llamareg":
        return 3
    if architecture == "lapirn":
        return config.model.sizes.get("active_levels", 3)
    return 1


def _validate_architecture(config: Config) -> None:
    model, train = config.model, config.train
    look_up_option(model.architecture, ARCHITECTURES, "model.architecture")
    if model.architecture == "llamareg":
        if model.sizes:
            raise ValueError(f"model.sizes is for baselines; LLaMA-Reg is sized by model.base_channels and friends, got {model.sizes}")
    else:
        if model.steps != 1:
            raise ValueError(f"model.steps (cascaded decoding) is LLaMA-Reg's; {model.architecture} needs model.steps=1, got {model.steps}")
        # Which sizes a baseline takes is the baseline's to say: build_baseline rejects the others.
    if train.schedule == "lapirn":
        if model.architecture != "lapirn":
            raise ValueError(f"train.schedule=lapirn trains LapIRN's levels; model.architecture is '{model.architecture}'")
        if "active_levels" in model.sizes:
            raise ValueError("train.schedule=lapirn sets LapIRN's active levels phase by phase; remove model.sizes.active_levels")
    count = flow_count(config)
    if len(train.scale_weights) != count:
        what = "the 1/4, 1/2 and full-resolution flows" if model.architecture == "llamareg" else "its fields, coarsest first"
        raise ValueError(f"train.scale_weights needs {count} weight(s) for {model.architecture} ({what}), got {train.scale_weights}")
