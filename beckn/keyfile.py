"""A node's key file: generated once, private to the node's user, read at every start."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from beckn.keys import generate_key_pairs

KEY_FILE = "node-keys.json"


def ensure_node_keys(data_dir: Path) -> dict[str, str]:
    """Load the node's keys, generating them on first start. The file is private (0600)."""
    path = data_dir / KEY_FILE
    if path.exists():
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = {"unique_key_id": str(uuid.uuid4()), **generate_key_pairs().to_json()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out, indent=2)
    return keys
