"""Signed transaction logs: RFC 9162 Merkle trees, C2SP signed notes, checkpoints and tiles."""
