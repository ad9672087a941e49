"""The served classifier's guards: the rule that refuses an input outside its accepted range
(in the words the client, the preprocessing model and the server all give), and the check
that no output is NaN or Inf.

The ranges are :data:`gatta.bounds.INPUT_BOUNDS`; they reach this rule as
``Bounds.to_dict()`` dicts, the form config.pbtxt parameter ``bounds`` carries, so that a
model repository keeps the ranges it was exported with. :func:`gatta.bounds.range_error` is
this rule on the package's own ranges.

Self-contained on purpose (math and numpy only): the exporter pastes this file's source into
the classifier's model.py, which runs inside Triton and cannot import ``gatta``.
"""

import math

import numpy as np


def short_float(value):
    """255.0, 1e+30, -2.118: six significant digits, always read as a float."""
    return repr(float(f"{float(value):.6g}"))


def range_refusal(name, values, bounds):
    """``(reason, one-line message)`` when ``values`` (an array) of input ``name`` are refused,
    else None. ``bounds``: input name -> ``Bounds.to_dict()``; an input without one is only
    refused for NaN or Inf. Reasons: ``non_finite`` and ``<name>_range`` (the ``reason`` label
    of gatta_rejected_requests_total).

    >>> range_refusal("x", np.array([0.0, 255.0]), {"x": {"low": 0, "high": 1, "tolerance": 0,
    ...     "expect": "x in [0, 1]", "above": [[2, "divide by 255"]], "below": []}})
    ('x_range', "input 'x' max 255.0: x in [0, 1]; divide by 255")
    """
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())  # one pass each; NaN or Inf shows in one
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "non_finite", f"input '{name}' contains NaN or infinite values"
    b = bounds.get(name)
    if b is None:
        return None
    for side, value, outside, hints in (("min", lo, lo < b["low"] - b["tolerance"], b["below"]),
                                        ("max", hi, hi > b["high"] + b["tolerance"], b["above"])):
        if outside:
            # the first hint whose threshold the value passes names the likely cause
            hint = next((h for t, h in hints if (value < t if side == "min" else value > t)), "")
            message = f"input '{name}' {side} {short_float(value)}: {b['expect']}" + (f"; {hint}" if hint else "")
            return f"{name}_range", message
    return None


def non_finite_rows(outputs, batch):
    """Boolean [batch]: True for images with a NaN or Inf in any output (name -> array with
    ``batch`` rows), or None when all are finite. A finite sum of sums proves every output
    finite, one pass over each (NaN and Inf propagate through sums); only when it is not (a
    NaN, an Inf, or an overflowing sum) are the outputs checked image by image."""
    if math.isfinite(sum(float(arr.sum()) for arr in outputs.values())):
        return None
    bad = np.zeros(batch, bool)
    for arr in outputs.values():
        bad |= ~np.isfinite(arr.reshape(batch, -1)).all(1)
    return bad if bad.any() else None
