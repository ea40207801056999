"""`lakou audit`: check a node's signed transaction log without trusting the node.

Everything a node answers is checked here against what the auditor already trusts: the log's
verifier key (from the registry record, or the operator), the witnesses' keys, and a checkpoint
saved by an earlier run. The node is just a source of bytes (research note audit-log.md §4.8).

* ``lakou audit verify``: the checkpoint's signature and witness quorum, its consistency with a
  saved checkpoint, and (--full) the whole tree recomputed from the tlog-tiles.
* ``lakou audit messages``: one transaction's messages with their raw bodies (auditor token), each
  opened against its leaf's commitments and proved into a verified checkpoint.
* ``lakou audit reconcile``: two or more parties' logs of one transaction matched against each
  other (each message sent by one received by the other with the same body hash), every signature
  checked against the registry's signed key history (beckn/tlog/reconcile.py).
* ``lakou audit token``: a new auditor token and the hash the node's operator configures.

Exit codes: 0 all checks passed, 1 a check failed (the message says which), 2 usage, network or
HTTP errors (nothing was concluded).

Only the pure parts of beckn.tlog (merkle, note, tiles, leaf, receipt, reconcile), the BECKN-006
signature code and the registry record parser are used: no database, no node code.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from beckn.tlog import merkle, tiles
from beckn.tlog.leaf import SidecarMismatch, check_sidecar, commit
from beckn.tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    NoteError,
    NoteVerifier,
    open_checkpoint,
    verify_cosignature,
)
from beckn.tlog.reconcile import (
    ExportError,
    KeyAt,
    Report,
    export_subscriber,
    log_owner,
    moments,
    reconcile,
    signature_key_ids,
    verify_log,
)

audit_app = typer.Typer(
    help="Check a node's signed transaction log (checkpoints, proofs, tiles, sidecars) without trusting it.",
    no_args_is_help=True,
)

OK, FAILED, USAGE = 0, 1, 2


class Usage(Exception):
    """Nothing could be concluded: bad arguments, unreadable files, network or HTTP errors."""


class Failed(Exception):
    """A verification failed: evidence against the log (or the files given)."""


def _exit(code: int, message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _run(body: Callable[[], None]) -> None:
    try:
        body()
    except Failed as exc:
        _exit(FAILED, f"FAILED: {exc}")
    except Usage as exc:
        _exit(USAGE, f"error: {exc}")


# ---------------------------------------------------------------- inputs


def _verifier(vkey: str, what: str) -> NoteVerifier:
    try:
        return NoteVerifier.from_vkey(vkey.strip())
    except NoteError as exc:
        raise Usage(f"{what} {vkey!r} is not a valid vkey: {exc}") from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Usage(f"cannot read {str(path)!r}: {exc}") from None


def _write_atomically(path: Path, text: str) -> None:
    # A crash mid-write must not leave a half checkpoint, the trusted state of the next run.
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise Usage(f"cannot write {str(path)!r}: {exc}") from None


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise Failed(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Failed(f"{what} is not valid base64") from None


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise Failed(f"{what} is not a list")
    return [_b64(h, f"{what}[{i}]") for i, h in enumerate(value)]


class Node:
    """The node's /tlog API over HTTP. HTTP and network problems are Usage: they prove nothing."""

    def __init__(self, url: str, timeout: float, token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise Usage(f"--node must be an http(s) URL, not {url!r}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)

    def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise Usage(f"GET {path}: {exc}") from None
        if response.status_code != 200:
            raise Usage(f"GET {path}: HTTP {response.status_code}: {_detail(response)}")
        return response

    def json_or_none(self, path: str) -> dict[str, Any] | None:
        """As json(), but None for a 404 (nothing of that name on this node)."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise Usage(f"GET {path}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise Usage(f"GET {path}: HTTP {response.status_code}: {_detail(response)}")
        return self._object(path, response)

    def json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._object(path, self.get(path, params))

    @staticmethod
    def _object(path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise Usage(f"GET {path}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise Usage(f"GET {path}: the answer is not a JSON object")
        return data

    def tile(self, tile: tiles.Tile) -> bytes:
        return self.get("/tlog/" + tile.path).content

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200]


# ---------------------------------------------------------------- checks


def check_checkpoint(
    note: str, log_key: NoteVerifier, witnesses: list[NoteVerifier], quorum: int, origin: str | None
) -> tuple[Checkpoint, list[str]]:
    """The log's signature, then the witnesses' cosignatures against the quorum. Returns the
    checkpoint and one report line per check."""
    try:
        cp, _, _ = open_checkpoint(note, log_key, origin=origin)
    except NoteError as exc:
        raise Failed(f"checkpoint: {exc}") from None
    lines = [f"ok: checkpoint {cp.origin} size {cp.size} root {base64.b64encode(cp.root_hash).decode()} "
             f"signed by {log_key.name}"]
    cosigned = []
    for w in witnesses:
        try:
            ts = verify_cosignature(note, w)
        except NoteError as exc:
            lines.append(f"-- witness {w.name}: {exc}")
            continue
        cosigned.append(w.name)
        lines.append(f"ok: cosigned by {w.name} at {ts}")
    if len(cosigned) < quorum:
        raise Failed(f"{len(cosigned)} valid witness cosignature(s), quorum is {quorum}: "
                     + "; ".join(line for line in lines if line.startswith("--")))
    return cp, lines


def check_consistency(old: Checkpoint, new: Checkpoint, proof: list[bytes] | None) -> str:
    """The saved checkpoint must be a prefix of the new one (same origin, never shrinking)."""
    if old.origin != new.origin:
        raise Usage(f"the saved checkpoint is of log {old.origin!r}, not {new.origin!r}")
    if old.size > new.size:
        raise Failed(f"the log shrank: saved checkpoint has size {old.size}, the new one {new.size}")
    if old.size == new.size:
        if old.root_hash != new.root_hash:
            raise Failed(f"two checkpoints of size {new.size} with different roots: the log signed "
                         "two inconsistent views (keep both notes as evidence)")
        return f"ok: same tree as the saved checkpoint (size {new.size})"
    if proof is None:
        raise Usage("a consistency proof is needed: give --node or --proof")
    try:
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except merkle.ProofError as exc:
        raise Failed(f"checkpoint {new.size} is not consistent with the saved checkpoint {old.size}: "
                     f"{exc} (keep both notes as evidence)") from None
    return f"ok: consistent with the saved checkpoint (size {old.size} -> {new.size})"


def _tiles_by_level(size: int) -> dict[int, list[tiles.Tile]]:
    out: dict[int, list[tiles.Tile]] = {}
    for tile in tiles.tiles_for_size(size):
        out.setdefault(int(tile.level), []).append(tile)
    return out


def recompute_from_tiles(cp: Checkpoint, fetch: Callable[[tiles.Tile], bytes]) -> str:
    """fsck: hash every entry, check every hash tile of the tree against the recomputed hashes,
    and the recomputed root against the checkpoint's. O(n); about 5 s per million entries."""
    leaf_hashes: list[bytes] = []
    for tile in _tiles_by_level(cp.size).get(0, []):
        bundle = tiles.Tile(tiles.ENTRIES, tile.index, tile.width)
        try:
            entries = tiles.parse_entry_bundle(fetch(bundle))
        except tiles.TileError as exc:
            raise Failed(f"{bundle.path}: {exc}") from None
        if len(entries) != tile.width:
            raise Failed(f"{bundle.path}: {len(entries)} entries, expected {tile.width}")
        leaf_hashes += [merkle.leaf_hash(e) for e in entries]
    level_hashes = leaf_hashes
    for level, level_tiles in sorted(_tiles_by_level(cp.size).items()):
        for tile in level_tiles:
            data = fetch(tile)
            if len(data) != tile.width * merkle.HASH_SIZE:
                raise Failed(f"{tile.path}: {len(data)} bytes, expected {tile.width * merkle.HASH_SIZE}")
            for i in range(tile.width):
                j = tile.index * tiles.TILE_WIDTH + i
                if data[i * 32 : (i + 1) * 32] != level_hashes[j]:
                    what = f"entry {j}" if level == 0 else f"subtree {j} of tile level {level}"
                    raise Failed(f"{tile.path}: the hash of {what} does not match the one recomputed "
                                 "from the entries (an entry or a node was altered)")
        # The next tile level holds the roots of each run of 256 complete hashes of this one.
        level_hashes = [merkle.root(level_hashes[k : k + tiles.TILE_WIDTH])
                        for k in range(0, len(level_hashes) - tiles.TILE_WIDTH + 1, tiles.TILE_WIDTH)]
    root = merkle.root(leaf_hashes)
    if root != cp.root_hash:
        raise Failed(f"the root recomputed from {cp.size} entries is not the checkpoint's")
    return f"ok: recomputed the whole tree from {cp.size} entries and its tiles; the root matches"


# ---------------------------------------------------------------- lakou audit verify

NodeOpt = Annotated[str | None, typer.Option("--node", help="The node's base URL (serves /tlog/...).")]
VkeyOpt = Annotated[str, typer.Option("--vkey", envvar="LAKOU_AUDIT_VKEY",
                                      help="The log's verifier key (C2SP vkey, from the registry).")]
WitnessOpt = Annotated[list[str] | None, typer.Option(
    "--witness", help="A witness's cosignature vkey; repeat for each witness.")]
QuorumOpt = Annotated[int | None, typer.Option(
    "--quorum", min=0, help="Valid witness cosignatures required (default: all --witness).")]
OriginOpt = Annotated[str | None, typer.Option(
    "--origin", help="Expected checkpoint origin (default: the vkey's name).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="HTTP timeout in seconds.")]


def _log_key(vkey: str) -> NoteVerifier:
    key = _verifier(vkey, "--vkey")
    if key.sig_type != ED25519:
        raise Usage(f"--vkey {key.name}: a log's vkey has type 0x01 (Ed25519), this one is a witness key")
    return key


def _witnesses(vkeys: list[str] | None, quorum: int | None) -> tuple[list[NoteVerifier], int]:
    witnesses = [_verifier(v, "--witness") for v in vkeys or []]
    for w in witnesses:
        if w.sig_type != COSIGNATURE_V1:
            raise Usage(f"--witness {w.name}: not a cosignature/v1 (witness) vkey")
    quorum = len(witnesses) if quorum is None else quorum
    if quorum > len(witnesses):
        raise Usage(f"--quorum {quorum} is more than the {len(witnesses)} witness key(s) given")
    return witnesses, quorum


@audit_app.command("verify")
def verify(
    vkey: VkeyOpt,
    node: NodeOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Verify this checkpoint file instead of fetching the node's.")] = None,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = None,
    origin: OriginOpt = None,
    since: Annotated[Path | None, typer.Option(
        "--since", help="A checkpoint saved earlier: the new one must extend it.")] = None,
    proof: Annotated[Path | None, typer.Option(
        "--proof", help="Consistency proof file (JSON of /tlog/proof/consistency) for --since, offline.")] = None,
    save: Annotated[Path | None, typer.Option(
        "--save", help="After all checks pass, save the checkpoint here (may be the --since file).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Recompute the whole tree from the node's tiles and compare the root.")] = False,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Verify a log's checkpoint: signature, witness quorum, consistency with a saved one, tiles."""

    def body() -> None:
        log_key = _log_key(vkey)
        witnesses, q = _witnesses(witness, quorum)
        if checkpoint is None and node is None:
            raise Usage("give --node URL or --checkpoint FILE")
        if full and node is None:
            raise Usage("--full reads the tiles: give --node")
        client = Node(node, timeout) if node else None
        try:
            note = _read(checkpoint) if checkpoint else client.get("/tlog/checkpoint").text  # type: ignore[union-attr]
            cp, lines = check_checkpoint(note, log_key, witnesses, q, origin)
            for line in lines:
                typer.echo(line)
            if since is not None:
                try:
                    old, _, _ = open_checkpoint(_read(since), log_key, origin=origin)
                except NoteError as exc:
                    raise Usage(f"the saved checkpoint {str(since)!r} does not verify with --vkey: {exc}") from None
                consistency: list[bytes] | None = None
                if old.size < cp.size:
                    if proof is not None:
                        consistency = _proof_file(proof)
                    elif client is not None:
                        answer = client.json("/tlog/proof/consistency", {"first": old.size, "second": cp.size})
                        consistency = _hashes(answer.get("proof"), "consistency proof")
                typer.echo(check_consistency(old, cp, consistency))
            if full:
                assert client is not None
                typer.echo(recompute_from_tiles(cp, client.tile))
        finally:
            if client is not None:
                client.close()
        if save is not None:
            _write_atomically(save, note)
            typer.echo(f"saved the checkpoint to {save}")

    _run(body)


def _proof_file(path: Path) -> list[bytes]:
    try:
        data = json.loads(_read(path))
    except ValueError:
        raise Usage(f"{str(path)!r} is not JSON") from None
    if not isinstance(data, dict):
        raise Usage(f"{str(path)!r}: expected the JSON object of /tlog/proof/consistency")
    return _hashes(data.get("proof"), "consistency proof")


# ---------------------------------------------------------------- lakou audit messages


def _opens(in_leaf: Any, plain: str, salt: bytes | None) -> bool:
    """Whether a leaf field holds `plain`: verbatim, or as its salted commitment (leaf.py puts
    ids that are not plain tokens there that way)."""
    if in_leaf == plain:
        return True
    return salt is not None and isinstance(in_leaf, str) and in_leaf == commit(salt, plain.encode("utf-8"))


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_entries(
    txn: str, entries: list[Any], cp: Checkpoint | None
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Check each exported entry; yield (the JSON line to print, its failures)."""
    prev: bytes | None = None
    for n, e in enumerate(entries):
        failures: list[str] = []
        checks: dict[str, str] = {}
        if not isinstance(e, dict) or not isinstance(e.get("leaf_index"), int):
            raise Failed(f"entry {n} of the export is malformed")
        idx = e["leaf_index"]
        leaf = _b64(e.get("leaf"), f"entry {idx} leaf")
        lh = merkle.leaf_hash(leaf)
        try:
            fields = json.loads(leaf)
            assert isinstance(fields, dict)
        except (ValueError, AssertionError):
            raise Failed(f"entry {idx}: the leaf is not a JSON object") from None
        if e.get("leaf_hash") is not None and _b64(e["leaf_hash"], f"entry {idx} leaf_hash") != lh:
            failures.append("leaf_hash: the node's leaf hash is not the hash of the leaf it sent")
        erased = bool(e.get("erased"))
        # A missing part of a sidecar that is not marked erased fails this entry's commitments below.
        salt = None if erased or e.get("salt") is None else _b64(e["salt"], f"entry {idx} salt")
        body = None if erased or e.get("body") is None else _b64(e["body"], f"entry {idx} body")
        headers = e.get("headers") if not erased else None
        response = _b64(e["response"], f"entry {idx} response") if e.get("response") else None

        # The leaf is what the tree authenticates: the export's own columns must agree with it.
        if not _opens(fields.get("txn"), txn, salt):
            failures.append("leaf: not an entry of this transaction")
        if not _opens(fields.get("msg"), str(e.get("message_id")), salt):
            failures.append("leaf: the message id differs from the export's")
        if fields.get("dir") != e.get("direction"):
            failures.append("leaf: the direction differs from the export's")
        # prev links each entry to the node's previous entry of the transaction: a gap or a
        # reordering in the export (an entry left out) breaks the chain.
        if fields.get("prev") != (prev.hex() if prev is not None else None):
            failures.append("prev: the chain of this transaction's entries is broken (an entry is "
                            "missing or out of order)")
        prev = lh
        if erased:
            checks["commitments"] = "erased"
        else:
            try:
                if salt is None or len(salt) != 32 or body is None or not isinstance(headers, dict):
                    raise SidecarMismatch("the sidecar lacks its body, headers or 32-byte salt")
                check_sidecar(leaf, body=body, headers=headers, salt=salt)
                checks["commitments"] = "ok"
            except SidecarMismatch as exc:
                failures.append(f"commitments: {exc}")
        proof = e.get("proof")
        if proof is None:
            checks["inclusion"] = "pending: not in a checkpoint yet"
        elif cp is None:
            checks["inclusion"] = "unchecked: give --vkey"
        else:
            try:
                merkle.verify_inclusion(lh, idx, cp.size, _hashes(proof, f"entry {idx} proof"), cp.root_hash)
                checks["inclusion"] = f"ok: in checkpoint size {cp.size}"
            except merkle.ProofError as exc:
                failures.append(f"inclusion: {exc}")
        for failure in failures:
            checks[failure.split(":", 1)[0]] = "FAILED:" + failure.split(":", 1)[1]
        line = {
            "leaf_index": idx,
            "message_id": e.get("message_id"),
            "direction": e.get("direction"),
            "action": e.get("action"),
            "peer": e.get("peer"),
            "seen_at": e.get("seen_at"),
            "leaf": fields,
            "leaf_hash": base64.b64encode(lh).decode(),
            "erased": erased,
            "body": _text(body),
            "body_base64": None if body is None else base64.b64encode(body).decode(),
            "headers": headers,
            "response": _text(response),
            "checks": checks,
            "ok": not failures,
        }
        yield line, failures


@audit_app.command("messages")
def messages(
    node: Annotated[str, typer.Option("--node", help="The node's base URL.")],
    txn: Annotated[str, typer.Option("--txn", help="The transaction id.")],
    token: Annotated[str, typer.Option("--token", envvar="LAKOU_AUDITOR_TOKEN",
                                       help="Your auditor token (better from $LAKOU_AUDITOR_TOKEN).")],
    vkey: Annotated[str | None, typer.Option(
        "--vkey", envvar="LAKOU_AUDIT_VKEY", help="The log's vkey: verify the checkpoint and each inclusion proof.")] = None,
    witness: WitnessOpt = None,
    quorum: QuorumOpt = None,
    origin: OriginOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Print one transaction's logged messages as JSON lines, with raw bodies, each checked."""

    def body() -> None:
        log_key = _log_key(vkey) if vkey else None
        witnesses, q = _witnesses(witness, quorum)
        if witnesses and log_key is None:
            raise Usage("--witness needs --vkey")
        client = Node(node, timeout, token)
        try:
            export = client.json(f"/tlog/transactions/{_path_segment(txn)}/sidecars")
        finally:
            client.close()
        entries = export.get("entries")
        if not isinstance(entries, list):
            raise Usage("the export has no entry list")
        cp = None
        if log_key is not None:
            note = export.get("checkpoint")
            if not isinstance(note, str):
                raise Failed("the node sent no checkpoint to prove its entries against")
            cp, lines = check_checkpoint(note, log_key, witnesses, q, origin)
            for line in lines:
                typer.echo(line, err=True)
        failed = 0
        for line, failures in check_entries(txn, entries, cp):
            typer.echo(json.dumps(line, ensure_ascii=False, sort_keys=False))
            failed += bool(failures)
            for failure in failures:
                typer.echo(f"entry {line['leaf_index']}: {failure}", err=True)
        if failed:
            raise Failed(f"{failed} of {len(entries)} message(s) failed their checks")
        typer.echo(f"ok: {len(entries)} message(s) checked", err=True)

    _run(body)


def _path_segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# ---------------------------------------------------------------- lakou audit reconcile


class RegistryHistory:
    """The registry's key history over HTTP, every answer checked against the registry's signing
    key (X-Registry-Signature) before use: reconcile.KeyHistory for `lakou audit reconcile`.

    The registry's key is `--registry-key` if given (pinned), else the one it serves at
    GET /registry-key (trust on first use, said in the report)."""

    def __init__(self, url: str, timeout: float, registry_key: str | None) -> None:
        from beckn.keys import KeyFormatError, load_verify_key

        if not url.startswith(("http://", "https://")):
            raise Usage(f"--registry must be an http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout)
        self.pinned = registry_key is not None
        self.registry_id: str | None = None
        if registry_key is None:
            try:
                published = self._client.get("/registry-key")
                published.raise_for_status()
                data = published.json()
                registry_key, self.registry_id = data["signing_public_key"], data["subscriber_id"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                raise Usage(f"GET {self.url}/registry-key: {exc}") from None
        try:
            self._key = load_verify_key(str(registry_key))
        except KeyFormatError as exc:
            raise Usage(f"--registry-key is not an Ed25519 public key: {exc}") from None
        self._cache: dict[str, list[Any]] = {}

    def _lookup(self, body: dict[str, str]) -> list[Any]:
        from beckn.registry_client import InvalidRecord, normalise_record
        from beckn.signing import SignatureError, body_digest, parse_signature_header, verify_signature

        cache_key = json.dumps(body, sort_keys=True)
        if cache_key in self._cache:
            return self._cache[cache_key]
        try:
            response = self._client.post("/lookup", json=body)
        except httpx.HTTPError as exc:
            raise Usage(f"registry lookup: {exc}") from None
        if response.status_code != 200:
            raise Usage(f"registry lookup: HTTP {response.status_code}: {_detail(response)}")
        header = response.headers.get("X-Registry-Signature")
        try:
            if not header:
                raise SignatureError("the answer carries no X-Registry-Signature")
            params = parse_signature_header(header)
            if self.registry_id is not None and params.subscriber_id != self.registry_id:
                raise SignatureError(f"signed by {params.subscriber_id!r}, not the registry {self.registry_id!r}")
            verify_signature(params, self._key, digest_b64=body_digest(response.content))
        except SignatureError as exc:
            # An answer the registry's key did not sign proves nothing about anybody's keys.
            raise Failed(f"the registry's lookup answer is not signed by its key: {exc.reason}") from None
        try:
            elements = response.json()
        except ValueError:
            raise Usage("registry lookup: the answer is not JSON") from None
        records = []
        for element in elements if isinstance(elements, list) else []:
            try:
                records.append(normalise_record(element))
            except InvalidRecord:
                continue
        self._cache[cache_key] = records
        return records

    def signing_key(self, subscriber_id: str, unique_key_id: str, at: datetime) -> KeyAt:
        moment = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        records = [r for r in self._lookup({"subscriber_id": subscriber_id, "ukId": unique_key_id, "valid_at": moment})
                   if r.subscriber_id == subscriber_id and r.unique_key_id == unique_key_id]
        keys = {r.verify_key.encode() for r in records if r.verify_key is not None}
        if not keys:
            return KeyAt(None, "no such key valid then: not yet valid, expired or revoked before it")
        if len(keys) > 1:
            return KeyAt(None, "the registry shows several different keys under that id")
        return KeyAt(next(r.verify_key for r in records if r.verify_key is not None))

    def log_vkeys(self, subscriber_id: str, at: Sequence[datetime] = ()) -> list[str]:
        queries: list[dict[str, str]] = [{"subscriber_id": subscriber_id}]
        queries += [{"subscriber_id": subscriber_id, "valid_at": t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                    for t in moments(at)]
        found = [r.log_vkey for query in queries for r in self._lookup(query)
                 if r.subscriber_id == subscriber_id and r.log_vkey]
        return list(dict.fromkeys(found))

    def role(self, subscriber_id: str) -> str | None:
        types = {r.type for r in self._lookup({"subscriber_id": subscriber_id}) if r.subscriber_id == subscriber_id}
        return types.pop() if len(types) == 1 else None

    def close(self) -> None:
        self._client.close()


def _fetch_export(url: str, txn: str, token: str | None, timeout: float) -> dict[str, Any]:
    """One node's export of the transaction; a node that logged nothing of it gives an empty one
    (with its checkpoint, so that whose log it is can still be verified)."""
    client = Node(url, timeout, token)
    try:
        export = client.json_or_none(f"/tlog/transactions/{_path_segment(txn)}/sidecars")
        if export is not None:
            return export
        # 404: none of this transaction here (or an unknown token would have been a 401 first).
        note = client.get("/tlog/checkpoint").text
        vkey = client.get("/tlog/vkey").text.strip()
        return {"transaction_id": txn, "tree_size": None, "checkpoint": note, "entries": [],
                "origin": vkey.split("+", 1)[0]}
    finally:
        client.close()


def _pending(export: dict[str, Any]) -> bool:
    entries = export.get("entries")
    return not isinstance(export.get("checkpoint"), str) or (
        isinstance(entries, list) and any(isinstance(e, dict) and e.get("proof") is None for e in entries))


def _load_export(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read(path))
    except ValueError:
        raise Usage(f"{str(path)!r} is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise Usage(f"{str(path)!r} is not a transaction export (GET /tlog/transactions/<txn>/sidecars)")
    return data


def _print_report(report: Report, registry: RegistryHistory, as_json: bool) -> None:
    if as_json:
        for log in report.nodes:
            cp = log.checkpoint
            typer.echo(json.dumps({"kind": "log", "node": log.subscriber_id, "role": log.role,
                                   "checkpoint_size": cp.size if cp else None, "entries": len(log.entries)}))
        for finding in report.findings:
            typer.echo(json.dumps(finding.json(), ensure_ascii=False))
        typer.echo(json.dumps({"kind": "summary", "reconciled": report.reconciled, "flags": len(report.flags),
                               "matched": sum(f.kind == "matched" for f in report.findings),
                               "registry_key": "pinned" if registry.pinned else "served by the registry"}))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    if not registry.pinned:
        console.print(f"[yellow]note:[/] the registry's key was taken from {escape(registry.url)}/registry-key; "
                      "pin it with --registry-key")
    for log in report.nodes:
        cp = log.checkpoint
        state = f"checkpoint size {cp.size}" if cp else "[red]no verified checkpoint[/]"
        console.print(f"log of {escape(log.name)}: {state}, {len(log.entries)} entries of the transaction")
    style = {"matched": "green", "out_of_scope": "dim", "not_delivered": "dim", "erased": "yellow"}
    for finding in sorted(report.findings, key=lambda f: (not f.flag, f.kind != "matched")):
        mark = "[red]FLAG[/]" if finding.flag else f"[{style.get(finding.kind, 'dim')}]{finding.kind}[/]"
        console.print(f"{mark} {escape(finding.message)}")
    matched = sum(f.kind == "matched" for f in report.findings)
    if report.reconciled:
        console.print(f"[green]reconciled:[/] {matched} message(s) matched, no flag")
    else:
        console.print(f"[red]NOT reconciled:[/] {len(report.flags)} flag(s), {matched} message(s) matched")


@audit_app.command("reconcile")
def reconcile_command(
    txn: Annotated[str, typer.Option("--txn", help="The transaction id.")],
    registry: Annotated[str, typer.Option(
        "--registry", envvar="LAKOU_AUDIT_REGISTRY", help="The registry's URL: log keys and signing-key history.")],
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="A node's base URL; repeat for each party (BAP, BPP, gateway...).")] = None,
    token: Annotated[list[str] | None, typer.Option(
        "--token", envvar="LAKOU_AUDITOR_TOKEN",
        help="Auditor token: one for every --node, or one per --node in the same order.")] = None,
    export: Annotated[list[Path] | None, typer.Option(
        "--export", help="A saved export (JSON of /tlog/transactions/<txn>/sidecars) instead of a --node.")] = None,
    registry_key: Annotated[str | None, typer.Option(
        "--registry-key", envvar="LAKOU_AUDIT_REGISTRY_KEY",
        help="The registry's Ed25519 public key (base64) to check its answers; default: GET /registry-key.")] = None,
    save: Annotated[Path | None, typer.Option(
        "--save", help="Save each fetched export into this directory as <subscriber_id>.json.")] = None,
    wait: Annotated[float, typer.Option(
        "--wait", min=0, help="Seconds to wait for checkpoints covering every entry before concluding.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of the human summary.")] = False,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Match the BAP's and the BPP's (and any other party's) logs of one transaction: each message
    sent by one was received by the other with the same body hash, each signature valid against the
    registry's key history. Exit 0 reconciled, 1 any flag, 2 usage or network error."""
    import time

    def body() -> None:
        urls, files, tokens = node or [], export or [], token or []
        if len(urls) + len(files) < 1:
            raise Usage("give at least one --node URL or --export FILE (usually one per party)")
        if urls and not tokens:
            raise Usage("--node needs an auditor --token (or $LAKOU_AUDITOR_TOKEN)")
        if len(tokens) not in (0, 1, len(urls)):
            raise Usage(f"give one --token for all nodes or one per --node ({len(urls)}), not {len(tokens)}")
        exports = [_load_export(path) for path in files]
        deadline = time.monotonic() + wait
        for i, url in enumerate(urls):
            got = _fetch_export(url, txn, tokens[i] if len(tokens) > 1 else tokens[0], timeout)
            # Entries logged after the node's latest checkpoint have no proof yet: the checkpointer
            # signs one every few seconds, so wait for it rather than flag them.
            while _pending(got) and time.monotonic() < deadline:
                time.sleep(0.5)
                got = _fetch_export(url, txn, tokens[i] if len(tokens) > 1 else tokens[0], timeout)
            exports.append(got)
        keys = RegistryHistory(registry, timeout, registry_key)
        try:
            logs = []
            seen: set[str] = set()
            for data in exports:
                origin = data.get("origin")  # set by _fetch_export for a node with no entry of the txn
                claimed = export_subscriber(data) or (log_owner(origin) if isinstance(origin, str) else None)
                if claimed is None:
                    raise Usage("an export names no node and has no checkpoint: whose log is it?")
                if claimed in seen:
                    raise Usage(f"two logs of {claimed} given")
                seen.add(claimed)
                if save is not None:
                    save.mkdir(parents=True, exist_ok=True)
                    _write_atomically(save / f"{claimed}.json", json.dumps(data, indent=1))
                # Its own signatures' times: the log key published with the Beckn key it used then.
                hints = [at for sid, _, at in signature_key_ids(data) if sid == claimed]
                try:
                    logs.append(verify_log(data, txn, claimed, keys.log_vkeys(claimed, hints), keys.role(claimed)))
                except ExportError as exc:  # what a node served (or a file holds) is not its log
                    raise Failed(f"the export of {claimed} is malformed: {exc}") from None
            if not any(data["entries"] for data in exports):
                raise Usage(f"none of the logs given has an entry of transaction {txn!r}")
            report = reconcile(logs, keys)
        finally:
            keys.close()
        _print_report(report, keys, as_json)
        if not report.reconciled:
            raise typer.Exit(FAILED)

    _run(body)


# ---------------------------------------------------------------- lakou audit token


@audit_app.command("token")
def token(
    name: Annotated[str | None, typer.Option("--name", help="The auditor's name, shown in access logs.")] = None,
) -> None:
    """Print a new auditor token (give it to the auditor) and its hash (the node's configuration)."""
    if name is not None and ("=" in name or "," in name or not name.strip()):
        _exit(USAGE, "error: --name must be non-empty, without '=' or ','")
    value = secrets.token_urlsafe(32)
    from beckn.tlog.api import hash_auditor_token  # the same hashing the node applies

    config = hash_auditor_token(value)
    typer.echo(json.dumps({"token": value, "config": f"{name}={config}" if name else config}))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
