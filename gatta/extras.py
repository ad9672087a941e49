"""Clear errors when an optional dependency group (pip extra) is missing."""

from __future__ import annotations

import importlib


class MissingExtraError(ImportError):
    pass


def require(module: str, extra: str) -> None:
    """Import ``module`` or fail with the pip extra that provides it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed; install it with: pip install 'gattanet[{extra}]'"
        ) from exc
