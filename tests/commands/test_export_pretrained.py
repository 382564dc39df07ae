"""``llamareg export-pretrained``: the exported file, its metadata and model card, refused inputs; and
``llamareg register`` without --checkpoint, which uses the model shipped in llamareg/pretrained."""

import hashlib
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import llamareg
from llamareg.cli import main
from llamareg.config import config_from_dict, load_config
from llamareg.inference.pretrained import PRETRAINED_FORMAT, SHIPPED_REFERENCE, shipped_model_path
from llamareg.training.checkpoint import read_checkpoint

EXTRA = {"dev_test": {"dice": 0.8125, "pairs": 12}, "note": "figures | on held-out pairs"}
COMMAND = "llamareg train --config cpu-template --max-iters 150"


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    """The shared trained run exported with ``--card-extra``: in fp32 to ``fp32/``, in fp16 with ``--command`` to ``fp16/``."""
    folder = tmp_path_factory.mktemp("exported")
    (folder / "extra.json").write_text(json.dumps(EXTRA))
    common = ["export-pretrained", "--checkpoint", str(trained_run.checkpoint), "--card-extra", str(folder / "extra.json")]
    # The fixture's model has 8.7 M trainable values: 35 MB in fp32, over the 25 MB a shipped model may take.
    assert main([*common, "--out", str(folder / "fp32"), "--max-mb", "50"]) == 0
    assert main([*common, "--out", str(folder / "fp16"), "--fp16", "--command", COMMAND]) == 0
    return folder


def _read(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as stream:
        return stream.metadata(), {name: stream.get_tensor(name) for name in stream.keys()}


def test_the_export_holds_the_trainable_tensors_with_config_and_llm_identity(exported, trained_run):
    checkpoint = read_checkpoint(trained_run.checkpoint)
    for dtype in ("fp32", "fp16"):
        path = exported / dtype / "model.safetensors"
        assert path.stat().st_size < {"fp32": 50e6, "fp16": 25e6}[dtype]
        metadata, tensors = _read(path)
        assert metadata["format"] == PRETRAINED_FORMAT
        assert json.loads(metadata["config"]) == checkpoint["config"]
        assert json.loads(metadata["llm"]) == {"source": checkpoint["llm_source"], "fingerprint": checkpoint["llm_fingerprint"]}
        assert tensors.keys() == checkpoint["model"].keys()  # the trainable tensors: no frozen LLM layer, no optimizer
        for name, tensor in tensors.items():
            original = checkpoint["model"][name]
            if dtype == "fp32" or not original.is_floating_point():
                assert tensor.dtype == original.dtype and torch.equal(tensor, original), name
            else:
                assert tensor.dtype == torch.float16 and torch.equal(tensor, original.half()), name
    fp32, fp16 = (exported / d / "model.safetensors" for d in ("fp32", "fp16"))
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size


def test_the_model_card_records_provenance_validation_and_the_extra_entries(exported, trained_run):
    checkpoint_config = read_checkpoint(trained_run.checkpoint)["config"]
    source = Path(llamareg.__file__).parent  # the checkout whose commit the card names
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=source).stdout.strip()
    default_command = json.loads((exported / "fp32" / "model_card.json").read_text())["training_command"]
    words = shlex.split(default_command)  # by default the preset and every key the run's config differs from it by
    assert words[:4] == ["llamareg", "train", "--config", checkpoint_config["name"]] and "train.max_iters=150" in words
    rebuilt = load_config(words[3], [*words[4:], f"train.out={checkpoint_config['train']['out']}"])
    assert rebuilt.to_dict() == config_from_dict(checkpoint_config).to_dict()
    for dtype, command in (("fp32", default_command), ("fp16", COMMAND)):
        folder = exported / dtype
        card = json.loads((folder / "model_card.json").read_text())
        data = (folder / "model.safetensors").read_bytes()
        assert card["sha256"] == hashlib.sha256(data).hexdigest() and card["size_bytes"] == len(data)
        assert card["dtype"] == {"fp32": "float32", "fp16": "float16"}[dtype]
        assert card["git_commit"] == head and isinstance(card["git_dirty"], bool)
        assert card["training_command"] == command
        train = checkpoint_config["train"]
        assert (card["name"], card["seed"], card["data_seed"]) == (
            checkpoint_config["name"],
            train["seed"],
            checkpoint_config["data"]["seed"],
        )
        assert card["iterations"] == train["max_iters"] == 150
        assert card["data"]["source"] == checkpoint_config["data"]["source"] and "validation" in card["data"]["description"]
        assert card["config"] == checkpoint_config
        validation = card["validation"]
        assert validation["best_dice"] == pytest.approx(trained_run.metrics["val_dice_best"])
        assert validation["best_iteration"] == trained_run.metrics["best_iteration"]
        assert validation["pairs"] == trained_run.metrics["val_pairs"] and "validation pairs" in validation["note"]
        assert card["llm"]["fingerprint"] == json.loads(_read(folder / "model.safetensors")[0]["llm"])["fingerprint"]
        assert card["dev_test"] == EXTRA["dev_test"] and card["note"] == EXTRA["note"]
        markdown = (folder / "MODEL_CARD.md").read_text()
        for fragment in (
            card["sha256"],
            head,
            f"{validation['best_dice']:.4f} at iteration {validation['best_iteration']}",
            "validation pairs",
            f"`{command}`",
            "| dev_test.dice | 0.8125 |",
            "| note | figures \\| on held-out pairs |",
        ):
            assert fragment in markdown, fragment


def _rejected(capsys, argv, fragment):
    assert main([str(a) for a in argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and fragment in error, error


def test_existing_files_are_replaced_only_with_overwrite(capsys, trained_run, tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("an older card")
    argv = ["export-pretrained", "--checkpoint", trained_run.checkpoint, "--out", tmp_path, "--fp16"]
    _rejected(capsys, argv, f"{tmp_path / 'MODEL_CARD.md'} exists; pass --overwrite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL_CARD.md"]  # refused before writing anything
    assert main([str(a) for a in [*argv, "--overwrite"]]) == 0
    assert "older" not in (tmp_path / "MODEL_CARD.md").read_text() and (tmp_path / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing checkpoint", "does not exist"),
        ("foreign checkpoint", "is not a llamareg checkpoint"),
        ("extra not JSON", "is not valid JSON"),
        ("extra a list", "must hold a JSON object"),
        ("extra replaces a card key", "['sha256'], which the card fills itself"),
        ("too large", "over the 0.001 MB limit"),
        ("empty command", "--command is empty"),
        ("out is a file", "is a file; give a folder"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_written(capsys, trained_run, tmp_path, case, fragment):
    out, checkpoint, extra = tmp_path / "out", trained_run.checkpoint, tmp_path / "extra.json"
    options = []
    if case == "missing checkpoint":
        checkpoint = tmp_path / "missing.pt"
    elif case == "foreign checkpoint":
        checkpoint = tmp_path / "foreign.pt"
        torch.save({"state_dict": {"weight": torch.zeros(3)}}, checkpoint)
    elif case.startswith("extra"):
        extra.write_text({"extra not JSON": "{dice: 0.8", "extra a list": "[0.8]", "extra replaces a card key": '{"sha256": "x"}'}[case])
        options = ["--card-extra", extra]
    elif case == "too large":
        options = ["--max-mb", "0.001"]
    elif case == "empty command":
        options = ["--command", " "]
    else:
        out.write_text("")
    _rejected(capsys, ["export-pretrained", "--checkpoint", checkpoint, "--out", out, *options], fragment)
    assert not (out / "model.safetensors").exists()


@pytest.mark.skipif(
    not shipped_model_path().is_file(), reason="no model is shipped in llamareg/pretrained yet (llamareg export-pretrained)"
)
def test_register_without_checkpoint_uses_the_shipped_model(capsys, nifti_pairs, tmp_path):
    entry = nifti_pairs.entries[0]
    argv = ["register", nifti_pairs.folder / entry["fixed"], nifti_pairs.folder / entry["moving"], "--out", tmp_path, "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0
    record = json.loads((tmp_path / "registration.json").read_text())
    assert record["checkpoint"] == SHIPPED_REFERENCE
    assert record["checkpoint_sha256"] == hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
