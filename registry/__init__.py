"""registry: filled by a later issue."""
