"""Bad input: one ``error:`` line naming the culprit, exit code 2, and nothing written to --out.

The fixtures ``checkpoints`` and ``images`` (tests/commands/conftest.py) hold the valid inputs these
tests break one at a time; tests/commands/test_checkpoints.py shows the valid ones go through.
"""

import json

import nibabel
import numpy as np
import pytest

from llamareg.cli import main


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def _assert_rejected(capsys, argv, out, *names):
    code, err = _run(capsys, argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], lines[0]
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))
    return lines[0]


def _register(checkpoint, fixed, moving, out, *extra):
    return ["register", "--checkpoint", checkpoint, fixed, moving, "--out", out, *extra]


@pytest.mark.parametrize(
    "fixed, moving, labels, culprit",
    [
        ("fixed.nii.gz", "absent.nii.gz", None, "absent.nii.gz"),
        ("flat2d.nii.gz", "moving.nii.gz", None, "flat2d.nii.gz"),
        ("fixed.nii.gz", "series4d.nii.gz", None, "series4d.nii.gz"),
        ("fixed.nii.gz", "moving.nii.gz", "short_labels.nii.gz", "short_labels.nii.gz"),
        ("notes.nii.gz", "moving.nii.gz", None, "notes.nii.gz"),
        ("fixed.nii.gz", "truncated.nii.gz", None, "truncated.nii.gz"),
    ],
)
def test_register_rejects_bad_images(capsys, checkpoints, images, tmp_path, fixed, moving, labels, culprit):
    out = tmp_path / "out"
    extra = ["--moving-labels", images / labels] if labels else []
    _assert_rejected(capsys, _register(checkpoints / "valid.pt", images / fixed, images / moving, out, *extra), out, culprit)


@pytest.mark.parametrize(
    "checkpoint, words",
    [
        ("other_architecture.pt", "does not match this model's architecture"),
        ("foreign.pt", "is not a llamareg checkpoint"),
        ("absent.pt", "does not exist"),
        ("", "is a folder without model.safetensors"),
    ],
)
def test_register_rejects_bad_checkpoints(capsys, checkpoints, images, tmp_path, checkpoint, words):
    out = tmp_path / "out"
    argv = _register(checkpoints / checkpoint, images / "fixed.nii.gz", images / "moving.nii.gz", out)
    _assert_rejected(capsys, argv, out, checkpoint, words)


def test_register_refuses_an_llm_for_a_baseline(capsys, checkpoints, images, tmp_path):
    out = tmp_path / "out"
    argv = _register(checkpoints / "voxelmorph.pt", images / "fixed.nii.gz", images / "moving.nii.gz", out, "--llm", "random:smollm2-135m")
    _assert_rejected(capsys, argv, out, "--llm applies to LLaMA-Reg", "voxelmorph.pt is a voxelmorph model")


def test_register_needs_one_pair_source(capsys, checkpoints, images, tmp_path):
    out = tmp_path / "out"
    _assert_rejected(capsys, ["register", "--checkpoint", checkpoints / "valid.pt", images / "fixed.nii.gz", "--out", out], out, "MOVING")


def test_register_rejects_an_out_path_that_is_a_file(capsys, checkpoints, images, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    code, err = _run(capsys, _register(checkpoints / "valid.pt", images / "fixed.nii.gz", images / "moving.nii.gz", taken / "sub"))
    assert code == 2 and err.count("\n") == 1 and "taken" in err and "is a file" in err
    assert taken.read_text() == "a file"


@pytest.mark.parametrize("options, culprit", [(["--refine", "-1"], "--refine"), (["--refine", "3", "--refine-lr", "0"], "--refine-lr")])
def test_register_rejects_bad_refinement_options(capsys, checkpoints, images, tmp_path, options, culprit):
    out = tmp_path / "out"
    argv = _register(checkpoints / "valid.pt", images / "fixed.nii.gz", images / "moving.nii.gz", out, *options)
    _assert_rejected(capsys, argv, out, culprit)


@pytest.mark.parametrize(
    "options, culprit",
    [
        (["--spacing", "0"], "--spacing"),
        (["--spacing", "1mm"], "--spacing"),
        (["--shape", "64", "80"], "--shape"),
        (["--shape", "64,80,60"], "--shape"),
        (["--shape", "0,16,16"], "--shape"),
        (["--spacing", "-2"], "--spacing"),
    ],
)
@pytest.mark.parametrize("command", ["register", "evaluate"])
def test_bad_model_grid_options(capsys, checkpoints, images, tmp_path, options, culprit, command):
    out = tmp_path / "out"
    if command == "register":
        argv = _register(checkpoints / "valid.pt", images / "fixed.nii.gz", images / "moving.nii.gz", out, *options)
    else:
        argv = ["evaluate", "--checkpoint", checkpoints / "valid.pt", "--pairs", _pairs(tmp_path, images), "--out", out, *options]
    _assert_rejected(capsys, argv, out, culprit)


def _pairs(tmp_path, images, **changes):
    entry = {
        "fixed": "fixed.nii.gz",
        "moving": "moving.nii.gz",
        "fixed_labels": "fixed_labels.nii.gz",
        "moving_labels": "moving_labels.nii.gz",
    }
    entry = {key: str(images / value) for key, value in {**entry, **changes}.items() if value is not None}
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([entry]))
    return path


@pytest.mark.parametrize(
    "changes, culprit",
    [
        ({"fixed_labels": None}, "pairs.json"),
        ({"moving_labels": "short_labels.nii.gz"}, "short_labels.nii.gz"),
        ({"fixed": "series4d.nii.gz"}, "series4d.nii.gz"),
        ({"moving": "absent.nii.gz"}, "absent.nii.gz"),
    ],
)
def test_evaluate_rejects_bad_pairs(capsys, checkpoints, images, tmp_path, changes, culprit):
    out = tmp_path / "out"
    argv = ["evaluate", "--checkpoint", checkpoints / "valid.pt", "--pairs", _pairs(tmp_path, images, **changes), "--out", out]
    _assert_rejected(capsys, argv, out, culprit)


def test_evaluate_rejects_an_unknown_mlflow_run_or_store(capsys, checkpoints, images, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("evaluation", artifact_location=(tmp_path / "artifacts").as_uri())
    capsys.readouterr()
    argv = [
        "evaluate",
        "--checkpoint",
        checkpoints / "valid.pt",
        "--pairs",
        _pairs(tmp_path, images),
        "--out",
        out,
        "--mlflow-run-id",
        "0123456789abcdef",
        "--tracking-uri",
        uri,
    ]
    _assert_rejected(capsys, argv, out, "0123456789abcdef", "--tracking-uri")
    absent = f"sqlite:///{tmp_path / 'typo.db'}"
    _assert_rejected(capsys, [*argv[:-1], absent], out, "typo.db", "does not exist")
    assert not (tmp_path / "typo.db").exists()


def test_evaluate_with_a_run_but_no_store_creates_none_in_the_working_folder(capsys, checkpoints, images, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = [
        "evaluate",
        "--checkpoint",
        checkpoints / "valid.pt",
        "--pairs",
        _pairs(tmp_path, images),
        "--out",
        out,
        "--mlflow-run-id",
        "0123456789abcdef",
    ]
    _assert_rejected(capsys, argv, out, "--mlflow-run-id 0123456789abcdef", "--tracking-uri")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_evaluate_rejects_an_out_of_range_figure_pair(capsys, checkpoints, images, tmp_path):
    out = tmp_path / "out"
    argv = ["evaluate", "--checkpoint", checkpoints / "valid.pt", "--pairs", _pairs(tmp_path, images), "--out", out, "--figure-pairs", "4"]
    _assert_rejected(capsys, argv, out, "--figure-pairs 4")


@pytest.mark.parametrize("content, culprit", [(None, "does not exist"), ("{not json", "is not valid JSON")])
def test_train_rejects_a_bad_deepspeed_config_before_deepspeed_starts(capsys, tmp_path, content, culprit):
    from llamareg.commands.train import main as train_main

    ds = tmp_path / "ds.json"
    if content is not None:
        ds.write_text(content)
    out = tmp_path / "run"
    assert train_main(["--ds", str(ds), "--out", str(out), "--max-iters", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: --ds {ds}") and culprit in error[0]
    assert not out.exists()


def test_register_refuses_to_replace_earlier_outputs_without_overwrite(capsys, checkpoints, images, tmp_path):
    out = tmp_path / "out"
    argv = [
        "register",
        "--checkpoint",
        str(checkpoints / "valid.pt"),
        str(images / "fixed.nii.gz"),
        str(images / "moving.nii.gz"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    written = {path.name: path.read_bytes() for path in out.iterdir()}
    capsys.readouterr()
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "already holds outputs" in error[0] and "--overwrite" in error[0]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == written
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize("shift_mm, outcome", [(1000.0, "error"), (24.0, "warning"), (0.0, "quiet")])
def test_register_checks_that_the_images_overlap_in_world_coordinates(capsys, checkpoints, images, tmp_path, shift_mm, outcome):
    moving = nibabel.load(images / "moving.nii.gz")
    affine = moving.affine.copy()
    affine[0, 3] += shift_mm  # the 40 mm wide box moved along x: 0, 40 % or 100 % of the fixed box covered
    nibabel.save(nibabel.Nifti1Image(np.asarray(moving.dataobj), affine), tmp_path / "shifted.nii.gz")
    out = tmp_path / "out"
    code = main(
        [
            "register",
            "--checkpoint",
            str(checkpoints / "valid.pt"),
            str(images / "fixed.nii.gz"),
            str(tmp_path / "shifted.nii.gz"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    error = capsys.readouterr().err
    if outcome == "error":
        assert code == 2 and "do not overlap in world coordinates" in error and not out.exists()
        return
    assert code == 0
    overlap = json.loads((out / "registration.json").read_text())["world_box_overlap"]
    assert overlap == pytest.approx(1.0 - shift_mm / 40.0)
    assert ("covers only 40 %" in error) == (outcome == "warning")
