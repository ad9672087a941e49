"""The accepted range of each numeric input, and the one-line reason a value is refused.

Torch-free (numpy, and the tensor names of :mod:`gatta.contract`) so the client, the exporter
and the load tools all read it:

- :class:`Bounds` and :data:`INPUT_BOUNDS`, one accepted range per input, which the exporter
  writes into config.pbtxt parameter ``bounds`` (:func:`gatta.export.repository.triton_parameters`);
- :func:`range_error`, the rule the served model, the preprocessing model and the client all
  enforce: :func:`gatta.guards.range_refusal` (which the exporter pastes into the classifier's
  ``model.py``) on these ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gatta.contract import IMAGE, LESION_MASK, QUERY_BIAS
from gatta.guards import range_refusal


# Finite values can still break an answer: pixels in 0..255 give a confident, meaningless class,
# and a query_bias of 1e30 overflows float32 on the way to the logits (NaN probabilities). Each
# numeric input has one accepted range, checked by the served model (which reads it from
# config.pbtxt parameter ``bounds`` and runs the same rule, gatta/guards.py pasted into it), the
# encoded-image pipeline and the client before it sends.
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


def range_error(name: str, values: np.ndarray) -> str | None:
    """One-line reason why ``values`` of input ``name`` are refused, or None when accepted.

    >>> range_error("image", np.array([0.0, 255.0]))
    "input 'image' max 255.0: pixels are expected in [0, 1]; divide by 255"
    """
    bounds = INPUT_BOUNDS.get(name)
    refused = range_refusal(name, np.asarray(values), {} if bounds is None else {name: bounds.to_dict()})
    return None if refused is None else refused[1]
