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


# Wheels that all install the one `onnxruntime` module: with two of them the last one
# installed silently wins file by file (a CPU build under a GPU name, or a broken mix).
ONNXRUNTIME_WHEELS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def onnxruntime_conflict(installed: list[str] | None = None) -> str | None:
    """One line telling how to fix an environment with more than one ONNX Runtime wheel,
    or None. ``installed``: distribution names (default: this environment's)."""
    if installed is None:
        from importlib.metadata import distributions

        installed = [d.metadata["Name"] or "" for d in distributions()]
    found = sorted({n.lower().replace("_", "-") for n in installed} & set(ONNXRUNTIME_WHEELS))
    if len(found) < 2:
        return None
    keep = "onnxruntime-gpu" if "onnxruntime-gpu" in found else found[-1]
    return (f"{' and '.join(found)} are both installed and share the `onnxruntime` module; keep one: "
            f"pip uninstall -y {' '.join(found)} && pip install {keep}")
