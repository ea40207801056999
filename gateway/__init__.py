"""gateway: filled by a later issue."""
