"""Lakou's Beckn protocol core: models, signatures, storage, delivery and registry client.

Nothing in this package knows about BAP or BPP business; services build on it.
"""

__version__ = "0.1.0"
