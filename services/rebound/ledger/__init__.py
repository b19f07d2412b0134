"""Ledger: graded units -> sellable stock per storefront key, adjusted exactly once."""
