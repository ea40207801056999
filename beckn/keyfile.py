"""A node's key file: generated once, private to the node's user, read at every start.

Besides the Beckn signing pair and the encryption pair, the file holds the node's transaction-log
key (`log_private_key`, a 32-byte Ed25519 seed, base64; `log_public_key`): a separate key that
signs only the log's checkpoints and receipts (beckn/tlog), so that rotating or losing one key
does not touch the other. A key file written before the log existed gets its log key added once.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from beckn.keys import generate_key_pairs

KEY_FILE = "node-keys.json"


def generate_log_key() -> dict[str, str]:
    """A fresh Ed25519 log key: {"log_private_key": base64 seed, "log_public_key": base64 raw public}."""
    key = Ed25519PrivateKey.generate()
    return {
        "log_private_key": base64.b64encode(key.private_bytes_raw()).decode("ascii"),
        "log_public_key": base64.b64encode(key.public_key().public_bytes_raw()).decode("ascii"),
    }


def load_log_key(keys: dict[str, str]) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(keys["log_private_key"], validate=True))


def _write_private(path: Path, keys: dict[str, str], *, replace: bool) -> None:
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out, indent=2)
        return
    # Atomic: a crash leaves the old file or the new one, never half of one.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def ensure_node_keys(data_dir: Path) -> dict[str, str]:
    """Load the node's keys, generating them on first start. The file is private (0600)."""
    path = data_dir / KEY_FILE
    if path.exists():
        keys = json.loads(path.read_text())
        if "log_private_key" not in keys:
            keys.update(generate_log_key())
            _write_private(path, keys, replace=True)
        return keys
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = {"unique_key_id": str(uuid.uuid4()), **generate_key_pairs().to_json(), **generate_log_key()}
    _write_private(path, keys, replace=False)
    return keys
