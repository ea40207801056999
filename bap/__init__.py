"""bap: filled by a later issue."""
