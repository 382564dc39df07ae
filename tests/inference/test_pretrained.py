"""Exported models load as their checkpoint does: ``load_trained_model`` with a ``.safetensors`` file, its
folder, or no path (the shipped model), giving the checkpoint's flows."""

import json

import pytest
import torch

from llamareg.export import export_pretrained
from llamareg.inference.model_io import load_trained_model
from llamareg.inference.pretrained import SHIPPED_REFERENCE


@pytest.fixture(scope="module")
def exports(trained_run, tmp_path_factory):
    """The shared trained run exported in fp32 (``fp32/``) and fp16 (``fp16/``)."""
    folder = tmp_path_factory.mktemp("exports")
    export_pretrained(trained_run.checkpoint, folder / "fp32", max_mb=50)  # 35 MB: over the default limit of a shipped model
    export_pretrained(trained_run.checkpoint, folder / "fp16", fp16=True)
    return folder


@pytest.fixture(scope="module")
def reference(trained_run):
    """The checkpoint's model and its flows on a fixed random pair of the training shape."""
    trained = load_trained_model(trained_run.checkpoint, device="cpu")
    generator = torch.Generator().manual_seed(0)
    pair = [torch.rand(1, 1, *trained.shape, generator=generator) for _ in range(2)]
    return trained, pair, _flows(trained, pair)


def _flows(trained, pair):
    with torch.no_grad():
        return trained.model(*pair)["flows"]


def test_an_fp32_export_loads_as_the_shipped_model_with_bit_identical_flows(exports, reference):
    _, pair, expected = reference
    trained = load_trained_model(None, device="cpu", shipped_folder=exports / "fp32")  # where the package's model would be
    assert all(torch.equal(a, b) for a, b in zip(_flows(trained, pair), expected))
    assert expected[-1].abs().max() > 0.1  # a trained, non-trivial field
    assert trained.shipped and trained.reference == SHIPPED_REFERENCE == "shipped:llamareg/pretrained/model.safetensors"
    assert trained.sha256 == json.loads((exports / "fp32" / "model_card.json").read_text())["sha256"]


def test_an_fp16_export_loads_back_in_fp32_with_close_flows(exports, reference):
    checkpoint_model, pair, expected = reference
    trained = load_trained_model(exports / "fp16", device="cpu")  # a folder holding model.safetensors
    assert trained.reference == str(exports / "fp16" / "model.safetensors") and not trained.shipped
    dtypes = {name: t.dtype for name, t in trained.model.state_dict().items()}
    assert dtypes == {name: t.dtype for name, t in checkpoint_model.model.state_dict().items()}
    for flow, target in zip(_flows(trained, pair), expected):
        assert not torch.equal(flow, target)  # the weights were rounded ...
        assert (flow - target).abs().max() < 0.02 * target.abs().max()  # ... by far less than the field's size


def test_no_shipped_model_is_a_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        load_trained_model(None, device="cpu", shipped_folder=tmp_path)
    message = str(caught.value)
    assert message.startswith("no pretrained model is shipped in this installation (") and message.endswith("; give --checkpoint")
    assert str(tmp_path / "model.safetensors") in message and "\n" not in message


def test_an_export_checks_its_llm_fingerprint(exports):
    with pytest.raises(ValueError, match="pass the same --llm"):
        load_trained_model(exports / "fp16" / "model.safetensors", llm="random:smollm2-135m", device="cpu")


def test_unreadable_exports_are_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="cannot be read as safetensors"):
        load_trained_model(tmp_path, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is a folder without model.safetensors"):
        load_trained_model(tmp_path / "empty", device="cpu")
