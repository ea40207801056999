"""The holder wallet's encrypted file: keys, master secret, credentials, activity log.

One wallet = one file (like a phone wallet; no database). The file is versioned JSON::

    {"fmt": "lakou-wallet", "v": 1, "blob": "<did.keys.encrypt_secret blob>"}

and the blob's plaintext is the wallet state (JSON, version ``STATE_VERSION``): the pairwise master
secret, the holder keys (private JWKs), key-rotation events, pairwise rotations per verifier, the
credentials and the activity log. Every save re-encrypts the whole state under the passphrase
(Argon2id + XSalsa20-Poly1305, parameters kept in the blob) and replaces the file atomically:
write a temp file in the same directory (mode 0600), fsync, ``os.replace``. A crash leaves either
the old or the new wallet, never a torn one.

Nothing here logs: the state holds private keys and personal data.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk as jwk_mod

from did import keys as keys_mod
from did import pairwise, sdjwt
from did.keys import DEFAULT_ARGON2, Argon2Params, decrypt_secret, encrypt_secret
from did.methods import did_jwk_from_jwk, did_key_from_jwk

FILE_FORMAT = "lakou-wallet"
BACKUP_FORMAT = "lakou-wallet-backup"
FILE_VERSION = 1
STATE_VERSION = 1


class WalletError(ValueError):
    """A wallet operation failed; the message is safe to show to the user."""


class WalletFileError(WalletError):
    """The wallet file is missing, not a wallet, or of an unsupported version."""


class CredentialNotFound(WalletError):
    pass


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now() -> int:
    return int(time.time())


def _params_of(blob: str) -> Argon2Params:
    d = json.loads(blob)
    return Argon2Params(int(d["t"]), int(d["m"]), int(d["p"]))


def _write_atomic(path: Path, data: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent or "."))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename durable
        dfd = os.open(str(path.parent or "."), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _thumbprint(key: jwk_mod.JWK | dict) -> str:
    k = key if isinstance(key, jwk_mod.JWK) else jwk_mod.JWK(**key)
    return k.thumbprint()


@dataclass(frozen=True)
class HolderKey:
    kid: str  # JWK thumbprint (RFC 7638)
    key: jwk_mod.JWK  # private
    alg: str  # EdDSA | ES256
    did_key: str
    did_jwk: str
    created_at: int
    retired_at: int | None

    def public_jwk(self) -> dict:
        return self.key.export_public(as_dict=True)


@dataclass(frozen=True)
class CredentialInfo:
    """Metadata of a stored credential (what a wallet lists; no claim values)."""

    id: str
    format: str
    vct: str | None
    issuer: str | None
    issued_at: int | None
    expires_at: int | None
    status: dict | None  # the credential's status reference (Token Status List), if any
    holder_kid: str | None  # the wallet key the credential is bound to (cnf.jwk thumbprint)
    credential_configuration_id: str | None
    received_at: int
    source: str | None  # the credential issuer URL it came from

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= _now()


class WalletStore:
    """Base of :class:`did.wallet.Wallet`: the state, the file and the local operations."""

    def __init__(self, path: Path, passphrase: str | bytes, state: dict, params: Argon2Params):
        self.path = Path(path)
        self._passphrase = passphrase
        self._state = state
        self._params = params

    # --- file ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, passphrase: str | bytes, *, key_type: str = "Ed25519",
               params: Argon2Params = DEFAULT_ARGON2, overwrite: bool = False):
        path = Path(path)
        if path.exists() and not overwrite:
            raise WalletFileError(f"a file already exists at {path}")
        if not passphrase:
            raise WalletError("the passphrase must not be empty")
        params.check()
        now = _now()
        state = {
            "v": STATE_VERSION,
            "wallet_id": str(uuid.uuid4()),
            "created_at": now,
            "master_secret": _b64u(pairwise.new_master_secret()),
            "keys": {},
            "default_key": None,
            "key_events": [],
            "pairwise_rotations": {},
            "credentials": {},
            "activity": [],
        }
        wallet = cls(path, passphrase, state, params)
        wallet._add_key(key_type, reason="created")
        wallet.save()
        return wallet

    @classmethod
    def open(cls, path: str | os.PathLike, passphrase: str | bytes):
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise WalletFileError(f"no wallet at {path}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise WalletFileError("not a wallet file (invalid JSON)") from None
        if not isinstance(doc, dict) or doc.get("fmt") != FILE_FORMAT:
            raise WalletFileError("not a Lakou wallet file")
        if doc.get("v") != FILE_VERSION:
            raise WalletFileError(f"unsupported wallet file version {doc.get('v')!r}")
        state, params = cls._open_blob(doc.get("blob"), passphrase)
        return cls(path, passphrase, state, params)

    @staticmethod
    def _open_blob(blob: Any, passphrase: str | bytes) -> tuple[dict, Argon2Params]:
        if not isinstance(blob, str):
            raise keys_mod.TamperedBlob("wallet file has no encrypted blob")
        plain = decrypt_secret(blob, passphrase)  # WrongPassphrase / TamperedBlob
        state = json.loads(plain)
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            raise WalletFileError("unsupported wallet state version")
        return state, _params_of(blob)

    def _blob(self, passphrase: str | bytes, params: Argon2Params) -> str:
        plain = json.dumps(self._state, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return encrypt_secret(plain, passphrase, params=params)

    def save(self) -> None:
        """Encrypt the state and replace the file atomically (mode 0600)."""
        doc = {"fmt": FILE_FORMAT, "v": FILE_VERSION, "blob": self._blob(self._passphrase, self._params)}
        _write_atomic(self.path, json.dumps(doc, separators=(",", ":")))

    def change_passphrase(self, new_passphrase: str | bytes) -> None:
        if not new_passphrase:
            raise WalletError("the passphrase must not be empty")
        self._passphrase = new_passphrase
        self.save()

    # --- backup -------------------------------------------------------------------------------

    def export_backup(self, backup_passphrase: str | bytes, *, params: Argon2Params | None = None) -> str:
        """The whole wallet encrypted under `backup_passphrase` (a JSON string to keep elsewhere)."""
        if not backup_passphrase:
            raise WalletError("the backup passphrase must not be empty")
        blob = self._blob(backup_passphrase, params or self._params)
        return json.dumps({"fmt": BACKUP_FORMAT, "v": FILE_VERSION, "exported_at": _now(), "blob": blob},
                          separators=(",", ":"))

    @classmethod
    def import_backup(cls, backup: str | bytes, backup_passphrase: str | bytes, path: str | os.PathLike,
                      passphrase: str | bytes, *, params: Argon2Params | None = None,
                      overwrite: bool = False):
        """Restore a backup into a new wallet file at `path`, encrypted under `passphrase`."""
        try:
            doc = json.loads(backup)
        except (TypeError, ValueError):
            raise WalletFileError("not a wallet backup (invalid JSON)") from None
        if not isinstance(doc, dict) or doc.get("fmt") != BACKUP_FORMAT:
            raise WalletFileError("not a Lakou wallet backup")
        if doc.get("v") != FILE_VERSION:
            raise WalletFileError(f"unsupported wallet backup version {doc.get('v')!r}")
        path = Path(path)
        if path.exists() and not overwrite:
            raise WalletFileError(f"a file already exists at {path}")
        state, bparams = cls._open_blob(doc.get("blob"), backup_passphrase)
        wallet = cls(path, passphrase, state, params or bparams)
        wallet._log_key_event("restored from backup", None)
        wallet.save()
        return wallet

    # --- keys ---------------------------------------------------------------------------------

    def _log_key_event(self, event: str, kid: str | None) -> None:
        self._state["key_events"].append({"event": event, "kid": kid, "at": _now()})

    def _add_key(self, key_type: str, *, reason: str) -> HolderKey:
        key = keys_mod.generate_key(key_type)
        kid = _thumbprint(key)
        self._state["keys"][kid] = {
            "jwk": key.export_private(as_dict=True),
            "created_at": _now(),
            "retired_at": None,
        }
        self._state["default_key"] = kid
        self._log_key_event(reason, kid)
        return self.key(kid)

    def key(self, kid: str | None = None) -> HolderKey:
        """A holder key by thumbprint (default: the current default key)."""
        kid = kid or self._state["default_key"]
        entry = self._state["keys"].get(kid)
        if entry is None:
            raise WalletError("no such key in this wallet")
        key = jwk_mod.JWK(**entry["jwk"])
        return HolderKey(kid=kid, key=key, alg=keys_mod.jws_alg(key), did_key=did_key_from_jwk(key),
                         did_jwk=did_jwk_from_jwk(key), created_at=entry["created_at"],
                         retired_at=entry["retired_at"])

    @property
    def default_key(self) -> HolderKey:
        return self.key()

    def keys(self) -> list[HolderKey]:
        return [self.key(k) for k in self._state["keys"]]

    def key_for_jwk(self, public_jwk: dict | jwk_mod.JWK) -> HolderKey | None:
        """The wallet key whose public part is `public_jwk` (matched by RFC 7638 thumbprint)."""
        try:
            kid = _thumbprint(public_jwk)
        except Exception:
            return None
        return self.key(kid) if kid in self._state["keys"] else None

    def rotate_key(self, key_type: str | None = None) -> HolderKey:
        """A new default holder key; the old one is retired but kept (credentials bound to it
        still present with it). Recorded in the key-rotation log."""
        old = self.default_key
        self._state["keys"][old.kid]["retired_at"] = _now()
        self._log_key_event("retired", old.kid)
        new = self._add_key(key_type or ("P-256" if old.alg == "ES256" else "Ed25519"), reason="rotated")
        self.save()
        return new

    @property
    def key_events(self) -> list[dict]:
        return [dict(e) for e in self._state["key_events"]]

    # --- pairwise -----------------------------------------------------------------------------

    def holder_for(self, verifier_id: str) -> pairwise.PairwiseIdentity:
        """The pairwise did:key (and private key) this wallet shows to `verifier_id`."""
        rotation = self._state["pairwise_rotations"].get(verifier_id, 0)
        return pairwise.pairwise_key(_b64u_decode(self._state["master_secret"]), verifier_id,
                                     rotation=rotation)

    def rotate_pairwise(self, verifier_id: str) -> pairwise.PairwiseIdentity:
        """Replace the pairwise identity used with one verifier (others are unchanged)."""
        rot = self._state["pairwise_rotations"].get(verifier_id, 0) + 1
        self._state["pairwise_rotations"][verifier_id] = rot
        ident = self.holder_for(verifier_id)
        self._log_key_event("pairwise rotated", ident.did)
        self.save()
        return ident

    # --- credentials --------------------------------------------------------------------------

    def add_credential(self, credential: str, *, fmt: str = "dc+sd-jwt", source: str | None = None,
                       credential_configuration_id: str | None = None, save: bool = True) -> CredentialInfo:
        """Store a (verified) SD-JWT VC; returns its metadata."""
        if fmt not in ("dc+sd-jwt", "vc+sd-jwt"):
            raise WalletError(f"unsupported credential format {fmt!r}")
        try:
            jwt, _, kb = sdjwt.split(credential)
            _, payload = sdjwt._unverified_jwt(jwt, "SD-JWT")
        except sdjwt.SdJwtError as exc:
            raise WalletError(f"not an SD-JWT VC: {exc}") from None
        if kb is not None:
            raise WalletError("this is a presentation (it carries a KB-JWT), not a credential")
        cnf = payload.get("cnf") if isinstance(payload.get("cnf"), dict) else {}
        holder = self.key_for_jwk(cnf["jwk"]) if isinstance(cnf.get("jwk"), dict) else None
        cid = secrets.token_urlsafe(12)
        self._state["credentials"][cid] = {
            "format": fmt,
            "credential": credential,
            "vct": payload.get("vct"),
            "issuer": payload.get("iss"),
            "issued_at": payload.get("iat"),
            "expires_at": payload.get("exp"),
            "status": payload.get("status"),
            "holder_kid": holder.kid if holder else None,
            "credential_configuration_id": credential_configuration_id,
            "received_at": _now(),
            "source": source,
        }
        if save:
            self.save()
        return self.credential_info(cid)

    def credential_info(self, credential_id: str) -> CredentialInfo:
        e = self._state["credentials"].get(credential_id)
        if e is None:
            raise CredentialNotFound("no such credential in this wallet")
        return CredentialInfo(id=credential_id, format=e["format"], vct=e["vct"], issuer=e["issuer"],
                              issued_at=e["issued_at"], expires_at=e["expires_at"], status=e["status"],
                              holder_kid=e["holder_kid"],
                              credential_configuration_id=e["credential_configuration_id"],
                              received_at=e["received_at"], source=e["source"])

    def list_credentials(self, *, vct: str | None = None) -> list[CredentialInfo]:
        out = [self.credential_info(cid) for cid in self._state["credentials"]]
        return [c for c in out if vct is None or c.vct == vct]

    def get_credential(self, credential_id: str) -> str:
        """The stored SD-JWT VC (issuer form, every disclosure)."""
        self.credential_info(credential_id)
        return self._state["credentials"][credential_id]["credential"]

    def credential_claims(self, credential_id: str) -> dict:
        """Every claim of a stored credential, disclosures applied (the holder's own view)."""
        cred = self.get_credential(credential_id)
        jwt, disclosures, _ = sdjwt.split(cred)
        _, payload = sdjwt._unverified_jwt(jwt, "SD-JWT")
        return sdjwt._Processor(disclosures).process(payload, ())

    def delete_credential(self, credential_id: str) -> None:
        self.credential_info(credential_id)
        del self._state["credentials"][credential_id]
        self.save()

    # --- activity -----------------------------------------------------------------------------

    def _record_activity(self, entry: dict) -> None:
        self._state["activity"].append({"at": _now(), **entry})

    @property
    def activity(self) -> list[dict]:
        """Every presentation (and issuance) this wallet made: verifier, claims, purpose, time."""
        return [dict(e) for e in self._state["activity"]]
