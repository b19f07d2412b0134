"""Rebound: returned units back to sellable stock, exactly once."""
