import pytest
import torch

from llamareg.data.volume import Volume


def make(image=None, labels=None, affine=None, name="subject-7"):
    image = torch.rand(1, 4, 5, 6) if image is None else image
    labels = torch.randint(0, 3, (1, 4, 5, 6)) if labels is None else labels
    affine = torch.eye(4, dtype=torch.float64) if affine is None else affine
    return Volume(image, labels, affine, name)


def test_valid_volume_reports_its_shape():
    assert make().shape == (4, 5, 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image": torch.full((1, 4, 5, 6), float("nan"))}, "NaN"),
        ({"image": torch.rand(4, 5, 6)}, r"\(1, D, H, W\)"),
        ({"image": torch.rand(1, 4, 5, 6) * 3}, r"\[0, 1\]"),
        ({"image": torch.rand(1, 4, 5, 6, dtype=torch.float64)}, "float32"),
        ({"labels": torch.rand(1, 4, 5, 6)}, "int64"),
        ({"labels": torch.zeros(1, 4, 5, 7, dtype=torch.long)}, "same shape"),
        ({"affine": torch.eye(4)}, "float64"),
        ({"affine": torch.eye(3, dtype=torch.float64)}, r"\(4, 4\)"),
    ],
)
def test_invalid_volume_names_itself(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        make(**kwargs)
    assert "subject-7" in str(error.value)
