"""C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, tile bytes and entry bundles.

A tiled log serves its Merkle tree as immutable, cacheable resources instead of dynamic proof
endpoints: ``<prefix>/tile/<L>/<N>[.p/<W>]`` holds up to 256 consecutive hashes, and
``<prefix>/tile/entries/<N>[.p/<W>]`` the matching entries. The n-th tile at tile level l is
(tlog-tiles §Merkle Tree)::

    MTH(D[(n * 256 + i) * 256**l : (n * 256 + i + 1) * 256**l])   for i in 0..255

i.e. the perfect subtrees at Merkle level 8*l with indexes n*256 .. n*256+255: exactly the nodes a
store keeps from merkle.CompactRange.append, so tiles are read straight from stored nodes. Clients
rebuild any RFC 9162 proof from tiles (``node_getter_from_tiles`` + merkle.subtree_from_nodes).

Hashing is RFC 6962/9162 SHA-256 throughout (see merkle.py).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .merkle import HASH_SIZE, node_hash

__all__ = [
    "ENTRIES",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileError",
    "encode_index",
    "entry_bundle",
    "node_getter_from_tiles",
    "parse_entry_bundle",
    "parse_tile_path",
    "tile_available",
    "tile_bytes",
    "tile_path",
    "tiles_for_size",
]

TILE_HEIGHT = 8  # tlog-tiles: a tile is a subtree of height 8 ...
TILE_WIDTH = 1 << TILE_HEIGHT  # ... so 256 hashes, 8,192 bytes when full
MAX_LEVEL = 63  # "<L> MUST be a decimal ASCII integer between 0 and 63"
ENTRIES = "entries"  # the level name of entry bundles in paths
MAX_ENTRY_SIZE = 0xFFFF  # entry bundles use big-endian uint16 length prefixes


class TileError(ValueError):
    """A malformed tile path, tile or entry bundle."""


@dataclass(frozen=True)
class Tile:
    """Tile coordinates: ``level`` (0..63, or ENTRIES for an entry bundle), ``index`` within the
    level and ``width`` (1..256; below 256 the tile is partial)."""

    level: int | str
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if self.level != ENTRIES and not (isinstance(self.level, int) and 0 <= self.level <= MAX_LEVEL):
            raise TileError(f"tile level must be 0..{MAX_LEVEL} or {ENTRIES!r}")
        if self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise TileError("tile index must be >= 0 and width 1..256")

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)


def encode_index(n: int) -> str:
    """tlog-tiles: zero-padded 3-digit path elements, all but the last prefixed with ``x``
    (1234067 -> ``x001/x234/067``), so tiles can be files without file/directory clashes."""
    if n < 0:
        raise TileError("tile index must be non-negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if not n:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` (or ``tile/entries/...``), relative to the log prefix."""
    Tile(level, index, width)  # validates
    suffix = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/{level}/{encode_index(index)}{suffix}"


_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def parse_tile_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` strictly: one spelling per tile, so a cache or a
    filesystem never holds the same tile under two names. Raises TileError."""
    m = _PATH.fullmatch(path)
    if not m:
        raise TileError(f"not a tile path: {path!r}")
    groups = m["index"].split("/")
    # No superfluous leading groups: x000/001 is not a spelling of 1.
    if len(groups) > 1 and groups[0] == "x000":
        raise TileError("tile index has a leading zero group")
    index = int("".join(g.lstrip("x") for g in groups))
    width = int(m["width"]) if m["width"] else TILE_WIDTH
    if m["width"] and width >= TILE_WIDTH:
        raise TileError("partial tile width must be 1..255")
    level: int | str = ENTRIES if m["level"] == ENTRIES else int(m["level"])
    return Tile(level, index, width)


def tiles_for_size(size: int) -> Iterator[Tile]:
    """Every hash tile of a tree of ``size`` leaves, full ones then the partial one, level by
    level (tlog-tiles §Partial Tiles: the partial tile at level l has floor(s/256**l) mod 256
    hashes; empty tiles do not exist)."""
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)  # complete subtrees of height 8*level
        for n in range(hashes // TILE_WIDTH):
            yield Tile(level, n)
        if hashes % TILE_WIDTH:
            yield Tile(level, hashes // TILE_WIDTH, hashes % TILE_WIDTH)
        level += 1


def tile_available(tile: Tile, size: int) -> bool:
    """Whether a tree of ``size`` leaves determines this tile (its hashes all cover complete
    subtrees). Partial tiles of earlier sizes stay available: clients may still ask for them."""
    level = 0 if tile.level == ENTRIES else int(tile.level)
    return (tile.index * TILE_WIDTH + tile.width) << (TILE_HEIGHT * level) <= size


def tile_bytes(tile: Tile, get: Callable[[int, int], bytes | None]) -> bytes:
    """The concatenated hashes of a hash tile, read from stored perfect-subtree nodes
    (``get(merkle_level, index)``, as in merkle.subtree_from_nodes). Raises LookupError if a node is
    missing: a tile must never be served incomplete, clients cache it forever."""
    if tile.level == ENTRIES:
        raise TileError("entry bundles are not hash tiles")
    level = TILE_HEIGHT * int(tile.level)
    out = []
    for i in range(tile.index * TILE_WIDTH, tile.index * TILE_WIDTH + tile.width):
        h = get(level, i)
        if h is None or len(h) != HASH_SIZE:
            raise LookupError(f"node ({level}, {i}) is not stored")
        out.append(h)
    return b"".join(out)


def node_getter_from_tiles(
    size: int, fetch: Callable[[Tile], bytes]
) -> Callable[[int, int], bytes | None]:
    """Client side: ``get(level, index)`` over the tiles of a tree of ``size`` leaves, for
    merkle.subtree_from_nodes, so proofs can be rebuilt from tiles alone.

    A node at Merkle level k = 8*l + r is the hash of 2**r consecutive hashes of tile level l;
    nodes that are not complete in this tree return None. ``fetch`` returns a tile's bytes (the
    partial width this size implies, or full); its length is checked.
    """
    cache: dict[Tile, list[bytes]] = {}

    def hashes(tile: Tile) -> list[bytes]:
        if tile not in cache:
            data = fetch(tile)
            if len(data) != tile.width * HASH_SIZE:
                raise TileError(f"{tile.path}: {len(data)} bytes, expected {tile.width * HASH_SIZE}")
            cache[tile] = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        return cache[tile]

    def hash_at(tile_level: int, j: int) -> bytes:
        # The j-th complete subtree of height 8*tile_level lives in tile j // 256 of that level.
        count = size >> (TILE_HEIGHT * tile_level)
        n = j // TILE_WIDTH
        width = TILE_WIDTH if (n + 1) * TILE_WIDTH <= count else count % TILE_WIDTH
        return hashes(Tile(tile_level, n, width))[j % TILE_WIDTH]

    def get(level: int, index: int) -> bytes | None:
        if (index + 1) << level > size:
            return None  # not a complete subtree of this tree
        tile_level, r = divmod(level, TILE_HEIGHT)
        row = [hash_at(tile_level, j) for j in range(index << r, (index + 1) << r)]
        while len(row) > 1:  # the levels inside a tile are rebuilt by hashing, per the spec
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        return row[0]

    return get


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """tlog-tiles §Log entries: big-endian uint16 length-prefixed entries."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileError("an entry bundle holds 1..256 entries")
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TileError(f"entry of {len(e)} bytes does not fit a uint16 length prefix")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle; rejects truncation and trailing bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError("truncated entry length")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise TileError("truncated entry")
        out.append(bytes(data[pos : pos + n]))
        pos += n
    if not 1 <= len(out) <= TILE_WIDTH:
        raise TileError("an entry bundle holds 1..256 entries")
    return out
