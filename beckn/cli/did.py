"""`lakou did ...`: issuer keys and merchant credentials (issue 7).

- `lakou did keygen --out FILE [--plain]`: a new Ed25519 issuer key, encrypted at rest with the
  passphrase in $LAKOU_DID_PASSPHRASE (Argon2id + XSalsa20-Poly1305, did.keys) unless `--plain`;
  prints its did:key (what verifiers put on their trust list).
- `lakou did issue-merchant --issuer-key FILE --subject-did DID --provider-id ID --siret S --name N
  --commune insee:972xx [--valid-days 365] [--status-list URL --status-index N]`: prints a signed
  `MartiniqueMerchantCredential` (did.merchant_credential) as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

did_app = typer.Typer(help="Issuer keys and verifiable credentials (DIDs).", no_args_is_help=True)

PASSPHRASE_ENV = "LAKOU_DID_PASSPHRASE"


def _passphrase() -> str | None:
    return os.environ.get(PASSPHRASE_ENV) or None


def write_issuer_key(path: Path, *, passphrase: str | None, plain: bool = False) -> str:
    """Write a new Ed25519 issuer key to `path` (0600, refused if it exists); return its did:key."""
    from did import keys
    from did.methods import did_key_from_jwk

    if path.exists():
        raise FileExistsError(f"{path} exists: refusing to overwrite a key")
    key = keys.generate_key("Ed25519")
    if plain:
        text = key.export_private()
    elif passphrase:
        text = keys.encrypt_private_key(key, passphrase)
    else:
        raise ValueError(f"set {PASSPHRASE_ENV} to encrypt the key, or pass --plain")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    return did_key_from_jwk(key)


def read_issuer_key(path: Path, *, passphrase: str | None):  # noqa: ANN201 - a jwcrypto JWK
    """An issuer key file: an encrypted blob (did.keys) or a plain private JWK."""
    from did import keys

    text = path.read_text().strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a key file (JSON)") from exc
    if isinstance(data, dict) and data.get("fmt") == keys.BLOB_FORMAT:
        if not passphrase:
            raise ValueError(f"{path} is encrypted: set {PASSPHRASE_ENV}")
        return keys.decrypt_private_key(text, passphrase)
    key = keys.import_key(data)
    if not key.has_private:
        raise ValueError(f"{path} holds a public key: an issuer needs its private key")
    return key


def issue_merchant(*, issuer_key: Path, subject_did: str, provider_id: str, siret: str, name: str,
                   commune: str, valid_days: int = 365, status_list: str | None = None,
                   status_index: int | None = None, passphrase: str | None = None) -> dict:
    """The signed credential (what `lakou did issue-merchant` prints)."""
    from did import status
    from did.merchant_credential import issue_merchant_credential

    entry = None
    if status_list is not None:
        if status_index is None:
            raise ValueError("--status-list needs --status-index")
        entry = status.status_entry(status_list, status_index)
    key = read_issuer_key(issuer_key, passphrase=passphrase if passphrase is not None else _passphrase())
    return issue_merchant_credential(key, subject_did=subject_did, provider_id=provider_id, siret=siret,
                                     legal_name=name, commune=commune, valid_days=valid_days,
                                     credential_status=entry)


@did_app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="Where to write the key (refused if it exists)."),
    plain: bool = typer.Option(False, "--plain", help=f"Unencrypted (tests only); default: encrypted with ${PASSPHRASE_ENV}."),
) -> None:
    """Create an Ed25519 issuer key and print its did:key."""
    try:
        typer.echo(write_issuer_key(out, passphrase=_passphrase(), plain=plain))
    except (FileExistsError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@did_app.command("issue-merchant")
def issue_merchant_command(
    issuer_key: Path = typer.Option(..., "--issuer-key", help="The issuer key file (lakou did keygen)."),
    subject_did: str = typer.Option(..., "--subject-did", help="The BPP's participant did:web (from the registry)."),
    provider_id: str = typer.Option(..., "--provider-id", help="The provider id in the BPP's catalogue."),
    siret: str = typer.Option(..., "--siret", help="The business's SIRET (14 digits)."),
    name: str = typer.Option(..., "--name", help="The legal name."),
    commune: str = typer.Option(..., "--commune", help="INSEE code, e.g. insee:97213."),
    valid_days: int = typer.Option(365, "--valid-days", min=1, max=3660),
    status_list: str = typer.Option(None, "--status-list", help="URL of the issuer's status list credential."),
    status_index: int = typer.Option(None, "--status-index", min=0, help="This credential's bit in it."),
) -> None:
    """Print a signed MartiniqueMerchantCredential (VC 2.0, eddsa-jcs-2022) as JSON."""
    from did.keys import DecryptionError

    try:
        credential = issue_merchant(issuer_key=issuer_key, subject_did=subject_did, provider_id=provider_id,
                                    siret=siret, name=name, commune=commune, valid_days=valid_days,
                                    status_list=status_list, status_index=status_index)
    except (OSError, ValueError, DecryptionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(credential, ensure_ascii=False, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(did_app, name="did")
