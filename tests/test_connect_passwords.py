"""Martinique Connect's password hashing cost: strong by default, configurable, and changeable.

The rest of the suite runs the provider at the cheapest Argon2id cost (tests/conftest.py); these
tests prove that production gets RFC 9106's cost, and that an operator who changes the cost locks
nobody out: stored hashes carry their own parameters, and a login re-hashes at the new cost.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from did.connect import admin
from did.connect.oauth import password_hasher, verify_secret
from did.connect.settings import ConnectSettings
from tests.conftest import CHEAP_ARGON2_ENV
from tests.connect_support import code_flow, provider

PASSWORD = "marie's long enough passphrase"
RFC_9106 = "m=65536,t=3,p=4"  # RFC 9106 section 4, second recommended option


def _params(hashed: str) -> str:
    return hashed.split("$")[3]  # $argon2id$v=19$m=...,t=...,p=...$salt$hash


def test_production_default_is_rfc_9106_cost(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CHEAP_ARGON2_ENV:
        monkeypatch.delenv(name, raising=False)
    settings = ConnectSettings(data_dir=tmp_path)
    hasher = password_hasher(settings)
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (3, 65536, 4)
    assert hasher.hash(PASSWORD).startswith(f"$argon2id$v=19${RFC_9106}$")


def test_the_cost_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAKOU_CONNECT_PASSWORD_TIME_COST", "2")
    monkeypatch.setenv("LAKOU_CONNECT_PASSWORD_MEMORY_KIB", "32")
    monkeypatch.setenv("LAKOU_CONNECT_PASSWORD_PARALLELISM", "2")
    assert _params(password_hasher(ConnectSettings(data_dir=tmp_path)).hash(PASSWORD)) == "m=32,t=2,p=2"


def test_less_than_8_kib_per_lane_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="MEMORY_KIB must be at least 8 x"):
        ConnectSettings(data_dir=tmp_path, connect_password_memory_kib=16, connect_password_parallelism=4)


def test_hashes_of_any_cost_verify_and_need_a_rehash_at_another() -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    other = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    hashed = cheap.hash(PASSWORD)
    assert verify_secret(hashed, PASSWORD) and verify_secret(other.hash(PASSWORD), PASSWORD)
    assert not verify_secret(hashed, PASSWORD + "!")
    assert other.check_needs_rehash(hashed) and not cheap.check_needs_rehash(hashed)


def test_a_password_hashed_at_the_production_cost_signs_in_after_a_change_and_is_rehashed(tmp_path: Path) -> None:
    db = tmp_path / "connect.db"
    url = f"sqlite+aiosqlite:///{db}"
    strong = ConnectSettings(data_dir=tmp_path, database_url=url, connect_secret="s" * 40,
                             connect_password_time_cost=3, connect_password_memory_kib=65536,
                             connect_password_parallelism=4)
    asyncio.run(admin.add_user(strong, username="marie", password=PASSWORD))

    def stored() -> str:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT password_hash FROM connect_account WHERE username = 'marie'").fetchone()[0]

    assert _params(stored()) == RFC_9106
    # The provider now runs at another cost (the suite's cheap one): marie still signs in...
    with provider(tmp_path, url) as op:
        assert "id_token" in asyncio.run(code_flow(op, username="marie", password=PASSWORD))["token"]
        # ...and her hash moved to the configured parameters, still for the same password.
        cost = op.settings
        expected = (f"m={cost.connect_password_memory_kib},t={cost.connect_password_time_cost},"
                    f"p={cost.connect_password_parallelism}")
        assert expected != RFC_9106 and _params(stored()) == expected
        assert verify_secret(stored(), PASSWORD) and not verify_secret(stored(), "a wrong passphrase!")
        assert "id_token" in asyncio.run(code_flow(op, username="marie", password=PASSWORD))["token"]
