"""did: filled by a later issue."""
