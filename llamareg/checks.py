"""Argument checks shared by every layer: each returns the checked value or raises a ValueError whose one
line names the argument, what it must be and what it got.

The ground floor of the package: it imports nothing from ``llamareg`` (nor torch), so networks, spatial
functions, data and commands all check their arguments the same way.

Example:
    >>> check_shape((32, 48, 32), "data.shape", multiple=16)
    (32, 48, 32)
    >>> look_up_option("bilinear", ("bilinear", "nearest"), "mode")
    'bilinear'
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

# What to do about a volume whose sides a network cannot halve often enough.
CROP_HINT = "; crop or pad the volumes"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an int, or ValueError naming ``name`` unless it is a positive integer."""
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_int_sequence(values: object, name: str, length: int | None = None) -> tuple[int, ...]:
    """``values`` as a tuple of positive ints (of ``length`` entries when given), or ValueError naming ``name``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
    result = tuple(values)
    if not result or any(not _is_int(v) or v < 1 for v in result):
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
    if length is not None and len(result) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(result)}: {values!r}")
    return tuple(int(v) for v in result)


def check_triple(value: object, name: str) -> tuple[int, int, int]:
    """An int ``n`` as ``(n, n, n)`` or three positive ints, else ValueError naming ``name``."""
    if _is_int(value):
        value = (value,) * 3
    return check_int_sequence(value, name, 3)  # type: ignore[return-value]


def check_shape(shape: object, name: str = "shape", multiple: int = 1, minimum: int = 1, hint: str = "") -> tuple[int, int, int]:
    """A volume shape (D, H, W): three integers, each at least ``minimum`` and divisible by ``multiple``.

    Args:
        shape: Any sequence of three integers (tuple, list, ``torch.Size``, numpy integers).
        name: The argument or option named in the error.
        multiple: Every size must be divisible by it (the network's total stride).
        minimum: Every size must be at least this.
        hint: Appended to the error, e.g. ``"; crop or pad the volumes"``.

    Example:
        >>> check_shape([2, 3, 4], minimum=2)
        (2, 3, 4)
    """
    sizes = tuple(shape) if isinstance(shape, Iterable) and not isinstance(shape, (str, bytes)) else ()
    if len(sizes) != 3 or any(not _is_int(s) or s < max(minimum, 1) or s % multiple for s in sizes):
        wanted = "positive sizes" if minimum <= 1 else f"sizes >= {minimum}"
        wanted += f" divisible by {multiple}" if multiple > 1 else ""
        raise ValueError(f"{name} must be three {wanted}, got {shape!r}{hint}")
    return tuple(int(s) for s in sizes)  # type: ignore[return-value]


def look_up_option(value: object, choices: Sequence[str], name: str) -> str:
    """``value`` if it is one of ``choices``, else ValueError naming ``name`` and the choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value  # type: ignore[return-value]
