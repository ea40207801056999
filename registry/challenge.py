"""The `on_subscribe` challenge crypto, re-exported from the protocol core (beckn/challenge.py).

The registry makes challenges and every node solves them with the same bytes, so the crypto lives
once in `beckn.challenge`; this module keeps the registry's import path.
"""

from __future__ import annotations

from beckn.challenge import (
    ChallengeError,
    decrypt_challenge,
    encrypt_challenge,
    make_challenge,
    shared_secret,
    solve_challenge,
)

__all__ = [
    "ChallengeError",
    "decrypt_challenge",
    "encrypt_challenge",
    "make_challenge",
    "shared_secret",
    "solve_challenge",
]
