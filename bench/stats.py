"""What the benchmark's latency steps report of their samples."""

from __future__ import annotations


def percentiles(samples: list[float]) -> dict:
    """p50, p95, p99 and max of sorted samples (ms), rounded to 0.1."""

    def at(q: float) -> float:
        return round(samples[min(len(samples) - 1, int(q * len(samples)))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(samples[-1], 1)}
