"""Relisting's PostgreSQL repository: the sellers' disposition policies and the last decision
made for each unit (so a new policy can decide again)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from rebound_contracts import UnitGraded

from ..db import Connection
from .domain import DEFAULT_POLICY, Policy


_POLICIES = "SELECT seller_id, policy, version FROM relisting.policies WHERE seller_id = ANY($1::text[])"

_OWNERS_AND_POLICIES = (
    "SELECT lpn, seller_id, NULL AS policy, NULL AS version FROM relisting.decisions WHERE lpn = ANY($1::text[])"
    " UNION ALL SELECT NULL, seller_id, policy, version FROM relisting.policies WHERE seller_id = ANY($2::text[])"
)
"""The sellers of the units $1 already decided (rows with an `lpn`), and the policies of the sellers
$2 that have one (rows without): one round trip for what a batch's prefetch needs."""


class PostgresRelistingRepository:
    """`domain.RelistingRepository` on PostgreSQL (its methods are documented there). Built per
    batch: the policies it reads are cached for the batch's length."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._policies: dict[str, tuple[Policy, int]] = {}
        self._decided: dict[str, tuple[UnitGraded, int]] = {}
        self._owners: dict[str, str | None] = {}  # as stored before this batch

    async def prefetch(self, events: Sequence[UnitGraded]) -> None:
        """Read the owners of the batch's units and its sellers' policies, in one statement."""
        lpns = list({e.lpn for e in events})
        sellers = {e.seller_id for e in events}
        rows = await self.conn.fetch(_OWNERS_AND_POLICIES, lpns, list(sellers))
        self._owners.update(dict.fromkeys(lpns))
        self._owners.update({r["lpn"]: r["seller_id"] for r in rows if r["lpn"] is not None})
        self._keep_policies(sellers, [r for r in rows if r["lpn"] is None])

    async def _read_policies(self, sellers: set[str]) -> None:
        self._keep_policies(sellers, await self.conn.fetch(_POLICIES, list(sellers)))

    def _keep_policies(self, sellers: set[str], rows: Sequence[asyncpg.Record]) -> None:
        self._policies.update(dict.fromkeys(sellers, (DEFAULT_POLICY, 0)))
        self._policies.update({r["seller_id"]: (Policy.model_validate_json(r["policy"]), r["version"]) for r in rows})

    async def owner(self, lpn: str) -> str | None:
        known = self._decided.get(lpn)
        if known is not None:
            return known[0].seller_id
        if lpn not in self._owners:
            self._owners[lpn] = await self.conn.fetchval(
                "SELECT seller_id FROM relisting.decisions WHERE lpn = $1", lpn
            )
        return self._owners[lpn]

    def record(self, graded: UnitGraded, policy_version: int) -> None:
        known = self._decided.get(graded.lpn)
        if known is None or known[0].revision <= graded.revision:
            self._decided[graded.lpn] = (graded, policy_version)

    async def flush(self) -> None:
        if self._decided:
            await self.conn.executemany(
                "INSERT INTO relisting.decisions AS d (lpn, seller_id, grade_revision, policy_version, graded)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (lpn) DO UPDATE SET grade_revision ="
                " EXCLUDED.grade_revision, policy_version = EXCLUDED.policy_version, graded = EXCLUDED.graded,"
                " decided_at = now() WHERE d.seller_id = EXCLUDED.seller_id"
                " AND d.grade_revision <= EXCLUDED.grade_revision",
                [
                    (g.lpn, g.seller_id, g.revision, version, g.model_dump_json())
                    for g, version in self._decided.values()
                ],
            )
            self._decided.clear()

    async def outdated_decisions(self, limit: int) -> list[UnitGraded]:
        """Units decided under an older policy than their seller's current one (locked; rows
        another transaction holds are left for the next sweep)."""
        rows = await self.conn.fetch(
            "SELECT d.graded FROM relisting.decisions d JOIN relisting.policies p USING (seller_id)"
            " WHERE d.policy_version < p.version ORDER BY d.seller_id, d.lpn LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
            limit,
        )
        return [UnitGraded.model_validate_json(r["graded"]) for r in rows]

    async def policy_for(self, seller_id: str) -> tuple[Policy, int]:
        if seller_id not in self._policies:
            await self._read_policies({seller_id})
        return self._policies[seller_id]


async def set_policy(conn: Connection, seller_id: str, policy: Policy | None) -> int | None:
    """Store a seller's policy (None: the default one) as its next version; the version, or None
    for an unknown seller. Units decided under an earlier version are decided again."""
    if not await conn.fetchval("SELECT 1 FROM rebound.sellers WHERE seller_id = $1", seller_id):
        return None
    policy = policy or DEFAULT_POLICY
    return await conn.fetchval(
        "INSERT INTO relisting.policies AS p (seller_id, policy, version) VALUES ($1, $2, 1)"
        " ON CONFLICT (seller_id) DO UPDATE SET policy = EXCLUDED.policy, version = p.version + 1,"
        " updated_at = now() RETURNING version",
        seller_id,
        policy.model_dump_json(exclude_defaults=True),
    )
