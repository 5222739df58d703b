"""Logins the stack generates once at ``stack up`` and keeps (mode 0600) beside its state.

Every port the stack opens asks for credentials: SeaweedFS's S3 keys (``seaweed.py``), MLflow's
built-in basic authentication and Prefect's API auth string. Each login is made from
``secrets`` at first start, written owner-only, reused at every restart (an MLflow admin
password is fixed once its user store exists) and handed to clients only through ``env.sh``.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Login:
    username: str
    password: str

    @property
    def basic(self) -> str:
        """``user:password``, the form Prefect's auth string takes."""
        return f"{self.username}:{self.password}"


def kept_login(state_dir: Path, name: str, username: str) -> Login:
    """``<state_dir>/<name>-login.json`` if it is there, else a new login written 0600."""
    path = Path(state_dir) / f"{name}-login.json"
    if path.exists():
        return Login(**json.loads(path.read_text()))
    login = Login(username, secrets.token_urlsafe(24))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(login.__dict__, handle)
    return login


def is_secret(key: str) -> bool:
    """Variables that hold a credential: kept out of ``state.json``, logs and messages."""
    return any(word in key for word in ("SECRET", "PASSWORD", "AUTH_STRING", "TOKEN"))
