"""`lakou keys new`, `lakou sign`, `lakou verify`: BECKN-006 by hand, for operators and peers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from beckn.keys import KeyFormatError, generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import (
    AUTHORIZATION,
    GATEWAY_AUTHORIZATION,
    PROXY_AUTHORIZATION,
    SignatureError,
    Signer,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)

keys_app = typer.Typer(help="Key pairs for a Beckn subscriber.", no_args_is_help=True)

BodyFile = Annotated[
    Path,
    typer.Option(
        "--body-file",
        help="File holding the exact HTTP body bytes ('-' for standard input).",
        allow_dash=True,
    ),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _read_body(path: Path) -> bytes:
    # Bytes, never text: the signature covers the exact bytes on the wire.
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"error: cannot read body file {str(path)!r}: {exc.strerror or exc}", 2)


@keys_app.command("new")
def keys_new() -> None:
    """Print a fresh Ed25519 signing pair and X25519 encryption pair as JSON (base64 raw keys)."""
    typer.echo(json.dumps(generate_key_pairs().to_json(), indent=2))


def sign(
    subscriber_id: Annotated[str, typer.Option("--subscriber-id", help="Signer's subscriber id (FQDN).")],
    key_id: Annotated[str, typer.Option("--key-id", help="Registry unique key id (ukId).")],
    private_key: Annotated[
        str,
        typer.Option(
            "--private-key",
            envvar="LAKOU_SIGNING_PRIVATE_KEY",
            help="Ed25519 private key: base64 32-byte seed or 64-byte libsodium key, PKCS#8, PEM.",
        ),
    ],
    body_file: BodyFile,
    created: Annotated[int | None, typer.Option(help="Unix seconds; default now.")] = None,
    expires: Annotated[int | None, typer.Option(help="Unix seconds; default created + validity.")] = None,
    validity: Annotated[int, typer.Option(help="Seconds the signature stays valid.", min=1)] = 3600,
) -> None:
    """Print the Authorization header value signing the body file's exact bytes."""
    try:
        key = load_signing_key(private_key)
        signer = Signer(subscriber_id, key_id, key, validity_seconds=validity)
    except (KeyFormatError, ValueError) as exc:
        _fail(f"error: {exc}")
    body = _read_body(body_file)
    try:
        header = signer.sign(body, created=created, expires=expires)
    except ValueError as exc:
        _fail(f"error: {exc}")
    typer.echo(header)


def verify(
    public_key: Annotated[
        str, typer.Option("--public-key", help="Signer's Ed25519 public key: base64 raw, SPKI DER, PEM.")
    ],
    header: Annotated[str, typer.Option("--header", help="The signature header value.")],
    body_file: BodyFile,
    now: Annotated[float | None, typer.Option(help="Unix seconds to check against; default now.")] = None,
    skew: Annotated[int, typer.Option(help="Allowed clock skew for `created`, seconds.", min=0)] = 5,
) -> None:
    """Exit 0 if the header signs the body file with the key; else 1, reason on stderr."""
    try:
        key = load_verify_key(public_key)
    except KeyFormatError as exc:
        _fail(f"error: {exc}")
    body = _read_body(body_file)
    try:
        params = parse_signature_header(_strip_header_name(header))
        check_signature_times(params, now=time.time() if now is None else now, skew_seconds=skew)
        verify_signature(params, key, digest_b64=body_digest(body))
    except SignatureError as exc:
        _fail(f"invalid: {exc.reason}")
    typer.echo(f"valid: keyId={params.key_id} created={params.created} expires={params.expires}")


def _strip_header_name(header: str) -> str:
    """Accept a whole pasted header line (`Authorization: Signature ...`) as well as its value."""
    name, sep, value = header.partition(":")
    if sep and name.strip().lower() in {
        AUTHORIZATION.lower(), GATEWAY_AUTHORIZATION.lower(), PROXY_AUTHORIZATION.lower()
    }:
        return value.strip()
    return header


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("sign")(sign)
    app.command("verify")(verify)
