"""bpp: filled by a later issue."""
