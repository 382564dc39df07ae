"""llamareg.checks: one-line ValueErrors that name the argument, for every layer's argument checks."""

import numpy as np
import pytest
import torch

from llamareg.checks import check_int_sequence, check_positive_int, check_shape, check_triple, look_up_option


def test_shapes_of_any_integer_sequence_come_back_as_int_tuples():
    assert check_shape(torch.Size([32, 48, 16]), multiple=16) == (32, 48, 16)
    assert check_shape(np.array([2, 3, 4]), minimum=2) == (2, 3, 4)
    assert all(type(size) is int for size in check_shape([np.int64(16)] * 3, multiple=16))


@pytest.mark.parametrize(
    "shape, options, message",
    [
        ((32, 48, 30), {"multiple": 16}, r"data.shape must be three positive sizes divisible by 16, got \(32, 48, 30\)"),
        ((32, 32), {}, r"data.shape must be three positive sizes, got \(32, 32\)"),
        ((1, 4, 4), {"minimum": 2}, r"data.shape must be three sizes >= 2, got"),
        ((4.0, 4, 4), {}, r"data.shape must be three positive sizes"),
        ("444", {}, r"data.shape must be three positive sizes"),
        ((0, 16, 16), {"multiple": 16, "hint": "; crop or pad the volumes"}, r"divisible by 16, got \(0, 16, 16\); crop or pad"),
    ],
)
def test_bad_shapes_are_one_line_errors_naming_the_option(shape, options, message):
    with pytest.raises(ValueError, match=message):
        check_shape(shape, "data.shape", **options)


def test_integer_checks_reject_bools_zeros_and_wrong_lengths():
    assert check_positive_int(np.int32(3), "depth") == 3 and check_triple(5, "window") == (5, 5, 5)
    for bad in (True, 0, 2.0):
        with pytest.raises(ValueError, match="depth must be a positive integer"):
            check_positive_int(bad, "depth")
    with pytest.raises(ValueError, match="heads must have 3 entries, got 2"):
        check_int_sequence([4, 4], "heads", 3)
    with pytest.raises(ValueError, match="depths must be a sequence of positive integers"):
        check_int_sequence("22", "depths")


def test_look_up_option_names_the_choices():
    assert look_up_option("joint", ("step-by-step", "joint"), "train.schedule") == "joint"
    with pytest.raises(ValueError, match="train.schedule must be one of step-by-step, joint, got 'cascade'"):
        look_up_option("cascade", ("step-by-step", "joint"), "train.schedule")
