"""The ``llamareg`` entry point: subcommands, help text, delegation of ``train``."""

import pytest

from llamareg.cli import main


def test_train_delegates_to_the_training_command(capsys):
    assert main(["train", "--print-config", "train.max_iters=7"]) == 0
    assert "max_iters: 7" in capsys.readouterr().out


def test_train_usage_names_the_llamareg_command(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert capsys.readouterr().out.startswith("usage: llamareg train ")


@pytest.mark.parametrize(
    "command, words",
    [("register", "Displacement convention"), ("evaluate", "metrics_per_label.csv"), ("export-pretrained", "MODEL_CARD.md")],
)
def test_help_documents_the_outputs(capsys, command, words):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and words in capsys.readouterr().out


def test_a_subcommand_is_required(capsys):
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2 and "register" in capsys.readouterr().err
