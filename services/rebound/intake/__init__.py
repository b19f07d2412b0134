"""Intake: return orders and dock scans -> matched, registered, sorted units."""
