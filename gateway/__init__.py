"""The Lakou search gateway (BG): multicasts a BAP's search to the matching BPPs, relays on_search."""
