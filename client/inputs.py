"""What the client refuses before sending: inputs the server would refuse, in the server's words
(the rule and the ranges are :mod:`gatta.bounds`'s, which the served model restates)."""

from __future__ import annotations

import numpy as np

from gatta.bounds import range_error

from . import metrics
from .errors import ClientError


class InputError(ClientError, ValueError):
    """An input the server would refuse (NaN, Inf, outside its accepted range); never sent."""


def check_inputs(feeds: dict[str, np.ndarray]) -> None:
    """Refuse before sending what the server would refuse, in its words: NaN, Inf, or values
    outside an input's accepted range (``gatta.bounds.INPUT_BOUNDS``). Raises InputError."""
    for name, values in feeds.items():
        reason = range_error(name, values)
        if reason is not None:
            metrics.ERRORS.labels(kind="input").inc()
            raise InputError(reason)
