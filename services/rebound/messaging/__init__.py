"""Kafka <-> PostgreSQL plumbing shared by every service: inbox, outbox, relay, batch consumer."""
