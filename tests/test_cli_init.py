"""`lakou init` (what `make up` runs today) prepares a node on a fresh machine."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from beckn.keys import load_signing_key, load_verify_key
from beckn.store.db import current_revision, head_revision

LAKOU = str(Path(sys.executable).with_name("lakou"))


def run_init(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKOU_")} | {"LAKOU_DATA_DIR": str(data_dir)}
    return subprocess.run([LAKOU, "init"], env=env, capture_output=True, text=True, timeout=60)


def test_init_migrates_the_store_and_creates_private_keys_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = run_init(data_dir)
    assert first.returncode == 0, first.stderr
    db_url = f"sqlite+aiosqlite:///{data_dir / 'lakou.db'}"
    assert asyncio.run(current_revision(db_url)) == head_revision()

    key_file = data_dir / "node-keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = json.loads(key_file.read_text())
    signing = load_signing_key(keys["signing_private_key"])
    assert bytes(signing.verify_key) == bytes(load_verify_key(keys["signing_public_key"]))
    assert keys["signing_public_key"] in first.stdout and keys["unique_key_id"] in first.stdout
    assert keys["signing_private_key"] not in first.stdout  # the secret is never printed

    again = run_init(data_dir)
    assert again.returncode == 0, again.stderr
    assert json.loads(key_file.read_text()) == keys  # restart keeps the node's identity
