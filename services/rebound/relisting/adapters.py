"""Relisting's PostgreSQL repository: the sellers' disposition policies."""

from __future__ import annotations

import asyncpg

from .domain import DEFAULT_POLICY, Policy


class RelistingRepository:
    """Built per batch: the policies it reads are cached for the batch's length."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._policies: dict[str, tuple[Policy, int]] = {}

    async def policy_for(self, seller_id: str) -> tuple[Policy, int]:
        """The seller's policy and its version; the default policy is version 0."""
        if seller_id not in self._policies:
            row = await self.conn.fetchrow(
                "SELECT policy, version FROM relisting.policies WHERE seller_id = $1", seller_id)
            self._policies[seller_id] = (
                (Policy.model_validate_json(row["policy"]), row["version"]) if row else (DEFAULT_POLICY, 0))
        return self._policies[seller_id]


async def set_policy(conn: asyncpg.Connection, seller_id: str, policy: Policy | None) -> int | None:
    """Store (or with None remove) a seller's policy; the new version, or None for an unknown seller."""
    if not await conn.fetchval("SELECT 1 FROM rebound.sellers WHERE seller_id = $1", seller_id):
        return None
    if policy is None:
        await conn.execute("DELETE FROM relisting.policies WHERE seller_id = $1", seller_id)
        return 0
    return await conn.fetchval(
        "INSERT INTO relisting.policies AS p (seller_id, policy, version) VALUES ($1, $2, 1)"
        " ON CONFLICT (seller_id) DO UPDATE SET policy = EXCLUDED.policy, version = p.version + 1,"
        " updated_at = now() RETURNING version",
        seller_id, policy.model_dump_json(exclude_defaults=True))
