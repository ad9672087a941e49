"""The admin key for Triton's operator APIs (shared memory, trace, logging): never a default.

Order: $GATTA_ADMIN_KEY; else the key file (a mounted secret); else, when a key file is named
but absent, a random key written there with mode 600 (the container's choice: it starts
without configuration, and the operator reads the key with ``docker exec``); else a random key
nobody knows, which simply locks those APIs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KNOWN_KEYS = {"change-me", "changeme", "admin", "secret", "password"}  # published or guessable
MIN_LENGTH = 16


class KeyFileError(RuntimeError):
    """The configured key is unusable (too short, a published default, unreadable file)."""


def _checked(key: str, source: str) -> str:
    key = key.strip()
    if key.lower() in KNOWN_KEYS or len(key) < MIN_LENGTH:
        raise KeyFileError(f"the admin key from {source} is {'a published default' if key.lower() in KNOWN_KEYS else 'too short'}; "
                           f"use at least {MIN_LENGTH} random characters, e.g. $(openssl rand -hex 16)")
    return key


def admin_key(key_file: Path | None = None, echo=print) -> str:
    """The key to protect the operator APIs with; says in one line where it came from when it
    was generated."""
    env = os.environ.get("GATTA_ADMIN_KEY")
    if env:
        return _checked(env, "GATTA_ADMIN_KEY")
    if key_file is None:
        return secrets.token_hex(16)
    key_file = Path(key_file)
    if key_file.exists():
        try:
            return _checked(key_file.read_text(), str(key_file))
        except OSError as exc:
            raise KeyFileError(f"cannot read the admin key file {key_file}: {exc.strerror}") from None
    key = secrets.token_hex(16)
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    except OSError as exc:
        raise KeyFileError(f"GATTA_ADMIN_KEY is not set and the admin key file {key_file} cannot be written "
                           f"({exc.strerror}); set GATTA_ADMIN_KEY") from None
    echo(f"GATTA_ADMIN_KEY is not set: generated a random admin key for the shared-memory, trace and logging "
         f"APIs; read it from {key_file}")
    return key
