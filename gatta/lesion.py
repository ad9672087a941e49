"""The paper's lesion notation, parsed in one place (torch-free: the client uses it too).

A pattern has one character per attached layer, in order: the layer's kind letter
(``c`` for a conv map, ``d`` for a dense layer) when attention modulates it, ``.`` when
it is lesioned. ``cccdd`` is the full toy model, ``.....`` the frozen baseline, ``c.cdd``
lesions the second conv layer (paper Fig. 4c).
"""

from __future__ import annotations

from typing import Sequence

KIND_LETTER = {"conv": "c", "dense": "d"}


class LesionError(ValueError):
    """A lesion pattern or mask that does not fit the model's attached layers."""


def full_pattern(kinds: Sequence[str]) -> str:
    """The all-modulated pattern for layers of these kinds, e.g. ``cccdd``."""
    return "".join(KIND_LETTER[k] for k in kinds)


def parse_lesion(pattern: str, kinds: Sequence[str]) -> list[float]:
    """Turn ``c.cdd`` into the mask ``[1, 0, 1, 1, 1]`` for layers of the given kinds.

    >>> parse_lesion("c.cdd", ["conv", "conv", "conv", "dense", "dense"])
    [1.0, 0.0, 1.0, 1.0, 1.0]
    """
    expected = full_pattern(kinds)
    if len(pattern) != len(expected):
        raise LesionError(
            f"lesion pattern {pattern!r} has {len(pattern)} characters; this model has "
            f"{len(expected)} attached layers (full pattern {expected!r})"
        )
    mask = []
    for position, (char, letter) in enumerate(zip(pattern, expected), start=1):
        if char == ".":
            mask.append(0.0)
        elif char == letter:
            mask.append(1.0)
        else:
            raise LesionError(
                f"lesion pattern {pattern!r}: character {position} is {char!r}, expected "
                f"{letter!r} (modulated) or '.' (lesioned); full pattern is {expected!r}"
            )
    return mask


def format_lesion(mask: Sequence[float], kinds: Sequence[str]) -> str:
    """Inverse of :func:`parse_lesion`: ``[1, 0, 1, 1, 1]`` -> ``c.cdd``."""
    if len(mask) != len(kinds):
        raise LesionError(f"lesion mask has {len(mask)} entries, expected {len(kinds)}")
    return "".join(KIND_LETTER[k] if m else "." for m, k in zip(mask, kinds))


def single_layer_patterns(kinds: Sequence[str]) -> list[str]:
    """Every single-layer lesion (``.cccd``...) then every single-layer-only pattern."""
    full = full_pattern(kinds)
    n = len(full)
    lesioned = [full[:i] + "." + full[i + 1 :] for i in range(n)]
    only = ["." * i + full[i] + "." * (n - i - 1) for i in range(n)]
    return lesioned + only
