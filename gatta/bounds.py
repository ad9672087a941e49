"""The accepted range of each numeric input, and the one-line reason a value is refused.

Torch-free (numpy, and the tensor names of :mod:`gatta.contract`) so the client, the exporter
and the load tools all read it:

- :class:`Bounds` and :data:`INPUT_BOUNDS`, one accepted range per input, which the exporter
  writes into config.pbtxt parameter ``bounds`` (:func:`gatta.export.repository.triton_parameters`);
- :func:`range_error`, the rule the served model, the preprocessing model and the client all
  enforce (the classifier's ``model.py`` restates it, as it cannot import this package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gatta.contract import IMAGE, LESION_MASK, QUERY_BIAS


# Finite values can still break an answer: pixels in 0..255 give a confident, meaningless class,
# and a query_bias of 1e30 overflows float32 on the way to the logits (NaN probabilities). Each
# numeric input has one accepted range, checked by the served model (which reads it from
# config.pbtxt parameter ``bounds`` and restates range_error's rule, as it cannot import this
# package), the encoded-image pipeline and the client before it sends.
@dataclass(frozen=True)
class Bounds:
    """Accepted values of one input: [low - tolerance, high + tolerance]. ``above``/``below``
    are (threshold, hint) pairs: the first whose threshold the offending value passes names
    the likely cause."""

    low: float
    high: float
    tolerance: float
    expect: str  # what the values should be, e.g. "pixels are expected in [0, 1]"
    above: tuple[tuple[float, str], ...] = ()
    below: tuple[tuple[float, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "tolerance": self.tolerance, "expect": self.expect,
                "above": [list(h) for h in self.above], "below": [list(h) for h in self.below]}


# query_bias moves q_avg, whose entries stay under 1 on the shipped model; a prior of strength
# 3 (the viewer's largest) needs entries under 5, and 10 already makes it answer one class with
# probability 1.000. 100 leaves room for other models while keeping its logits near 1e8, far
# from float32's 3e38 (at 1e10 they are NaN).
QUERY_BIAS_LIMIT = 100.0
INPUT_BOUNDS = {
    # 0.2: resampling a float image overshoots [0, 1] at edges, harmlessly (the 10 samples/
    # photos upsampled 32 -> 224 by torch's bicubic: -0.12 to 1.05); 0..255 pixels and
    # mean/std-normalised ones (about -2.1 to 2.6) are far outside
    IMAGE: Bounds(0.0, 1.0, 0.2, "pixels are expected in [0, 1]",
                  above=((300.0, "scale them to [0, 1]"), (2.0, "divide by 255"), (1.0, "clip them to [0, 1] (bicubic and Lanczos resizing overshoot)")),
                  below=((0.0, "do not normalise them: the model applies its own mean and std"),)),
    LESION_MASK: Bounds(0.0, 1.0, 0.0, "lesion_mask entries are expected in [0, 1]",
                        above=((1.0, "1 keeps a layer's attention, 0 switches it off"),),
                        below=((0.0, "1 keeps a layer's attention, 0 switches it off"),)),
    QUERY_BIAS: Bounds(-QUERY_BIAS_LIMIT, QUERY_BIAS_LIMIT, 0.0,
                       f"query_bias entries are expected in [{-QUERY_BIAS_LIMIT:g}, {QUERY_BIAS_LIMIT:g}]",
                       above=((0.0, "it is added to q_avg, and a top-down prior needs far less"),),
                       below=((0.0, "it is added to q_avg, and a top-down prior needs far less"),)),
}


def _short(value: float) -> str:
    """255.0, 1e+30, -2.118: six significant digits, always read as a float."""
    return repr(float(f"{float(value):.6g}"))


def range_error(name: str, values: np.ndarray) -> str | None:
    """One-line reason why ``values`` of input ``name`` are refused, or None when accepted.

    >>> range_error("image", np.array([0.0, 255.0]))
    "input 'image' max 255.0: pixels are expected in [0, 1]; divide by 255"
    """
    values = np.asarray(values)
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())  # NaN or Inf shows in one of them
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"input '{name}' contains NaN or infinite values"
    bounds = INPUT_BOUNDS.get(name)
    if bounds is None:
        return None
    if lo < bounds.low - bounds.tolerance:
        hint = next((h for t, h in bounds.below if lo < t), "")
        return f"input '{name}' min {_short(lo)}: {bounds.expect}" + (f"; {hint}" if hint else "")
    if hi > bounds.high + bounds.tolerance:
        hint = next((h for t, h in bounds.above if hi > t), "")
        return f"input '{name}' max {_short(hi)}: {bounds.expect}" + (f"; {hint}" if hint else "")
    return None
