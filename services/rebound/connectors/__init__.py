"""Storefront connectors: Rebound's stock adjustments applied to each marketplace's own number."""
