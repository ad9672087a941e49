"""Classify many files as a resumable job: results stream in input order and each is appended
to a JSONL file as it arrives, so a run killed at any point resumes where it stopped.

    from gatta.client import GattaClient
    from gatta.client.batch import classify_files, pending

    todo, skipped = pending(paths, Path("results.jsonl"))
    with GattaClient("localhost:8000") as client:
        for result, path in classify_files(client, todo, Path("results.jsonl")):
            print(path, result.label if result.ok else result.error)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

from .client import GattaClient
from .results import Classification


def done_paths(output: Path) -> set[str]:
    """Paths already classified in a JSONL file; a line cut short by a crash is ignored."""
    done = set()
    if output.exists():
        for line in output.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "error" not in record:
                done.add(record["path"])
    return done


def pending(paths: Sequence[Path], output: Path) -> tuple[list[Path], int]:
    """(paths not yet classified in ``output``, how many were skipped)."""
    done = done_paths(output)
    todo = [p for p in paths if str(p) not in done]
    return todo, len(paths) - len(todo)


def open_results(output: Path):
    """Append to a JSONL file; a last line cut short by a crash is closed first so the next
    record starts on its own line."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists() and output.stat().st_size:
        with open(output, "rb") as fh:
            fh.seek(-1, 2)
            cut = fh.read(1) != b"\n"
        if cut:
            with open(output, "a") as fh:
                fh.write("\n")
    return open(output, "a")


def classify_files(client: GattaClient, paths: Sequence[Path], output: Path | None = None,
                   **kwargs) -> Iterator[tuple[Classification, Path]]:
    """``client.classify_many`` over ``paths`` (``kwargs``: concurrency, batch_size, top_k,
    lesion, maps, prior), each result appended to ``output`` and flushed before it is yielded."""
    sink = open_results(output) if output else None
    try:
        for result, path in zip(client.classify_many(paths, **kwargs), paths):
            if sink:
                sink.write(json.dumps(result.to_json()) + "\n")
                sink.flush()
            yield result, path
    finally:
        if sink:
            sink.close()
