"""make bench [--full]: the ceiling, Rebound end to end, latency at half load, and scale.

The ceiling is the core step as a bare loop, one hop; the same loop three times in series, a
process per hop, is what three hops cost here when each does only the core step.

End to end is timed from inspection to adjustment, as the ceiling is: the wave's returns,
parcels and units are registered first, then every inspection is sent at once. The whole-wave
runs (RMA and scan included) show scale: 10k and 100k units, 1 and 2 replicas, 1M with --full
(after the latency step). Latency is measured at half the end-to-end rate, for Rebound and then
for the three-hop bare loop at the same offered load; then at light load (10, 50 and 100
units/s, one by one), with the CPU each process used, each rate offered to the three-hop and the
one-hop bare loop too (alone with --light-load). Then the connectors against the four
marketplace stand-ins (`bench/connectors.py`; alone with --connectors). The run ends with the
targets of docs/benchmarks.md, what Rebound measured against each and, where it applies, the three-hop bare loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from rebound.db import create_pool, migrate
from rebound.logs import configure
from rebound.messaging.topic_admin import ensure_topics
from rebound.settings import Settings

from . import ceiling, connectors, pipeline

OUT = Path(".bench")
TABLES = (
    "rebound.inbox",
    "rebound.outbox",
    "intake.rmas",
    "intake.rma_lines",
    "intake.units",
    "grading.units",
    "relisting.decisions",
    "ledger.units",
    "ledger.stock",
)


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


async def table_sizes(pool: asyncpg.Pool) -> dict:
    sizes = {}
    for table in TABLES:
        rows = await pool.fetchval(f"SELECT count(*) FROM {table}")  # fixed table names: TABLES
        size = await pool.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        sizes[table] = {"rows": rows, "mb": round(size / 1024 / 1024, 1)}
    return sizes


def connector_targets(result: dict) -> list[dict]:
    lags = result["connectors"]["steady"]["lag_ms"]
    return [
        {
            "target": f"connectors, {channel}: adjustment → marketplace p99 ≤ 1 s at the demo's load",
            "measured": f"{lag['p99'] / 1000:.1f} s",
            "met": lag["p99"] <= 1000,
        }
        for channel, lag in lags.items()
    ]


LIGHT_RATES = (10, 50, 100)
"""Units a second of the light-load step: where QC stations send inspections one by one."""
IDLE_S = 30.0
"""Seconds the fleet is left idle before the first light load, its CPU measured: long enough for
every consumer's held fetches and heartbeats to come round several times."""
WARM_UP = (50, 90.0)
"""Units a second and seconds of unmeasured load before the light-load step. A broker just
started compiles its hot paths for its first minute or two of load (its JIT compiler threads took
a quarter of its CPU then): what a broker that has run for days no longer pays."""


async def light_load(settings: Settings, seconds: float, log_dir: Path) -> dict:
    """Inspections sent one by one at each of LIGHT_RATES, each timed until its adjustment is
    readable, with the machine's busy share and each process's CPU while they were sent; and the
    same CPU measure of the idle fleet before the first rate."""
    runs: dict[str, dict] = {}
    rate, warm_s = WARM_UP
    print(f"light load: warming the broker up, {rate} units/s for {warm_s:.0f} s (not measured) ...", flush=True)
    await pipeline.latency(settings, rate, warm_s, log_dir / "light-warm-up")
    for rate in LIGHT_RATES:
        print(f"light load: {rate} units/s for {seconds:.0f} s ...", flush=True)
        first = not runs
        run = await pipeline.latency(
            settings, rate, seconds, log_dir / f"light-{rate}", cpu=True, idle_s=IDLE_S if first else 0.0
        )
        _say("Rebound", run)
        for hops, key, name in BARE_LOOPS:
            print(f"light load: the {name} at {rate} units/s for {seconds:.0f} s ...", flush=True)
            run[key] = await ceiling.measure_chain_latency(
                settings.kafka_bootstrap_servers, settings.database_url, rate, seconds, hops=hops, cpu=True
            )
            _say(name, run[key])
        runs[str(rate)] = run
    return runs


BARE_LOOPS = ((3, "bare_three_hops", "three-hop bare loop"), (1, "bare_one_hop", "one-hop bare loop"))
"""The bare loops each light rate is also offered to: three hops, a process each, as many as a
unit's common path crosses in Rebound; and one, the least any design with an outbox and a Kafka
transaction pays. What they use is the floor the services' own code adds to."""


def _say(what: str, run: dict) -> None:
    print(
        f"  {what}: p50 {run['p50']} ms, p99 {run['p99']} ms, machine {run['cpu']['machine_busy']:.0%} busy, "
        f"{run['cpu']['cpu_ms_per_unit']} ms of CPU per unit",
        flush=True,
    )


def light_targets(light: dict) -> list[dict]:
    """The light-load goals, each with what this run measured and what the three-hop bare loop
    measured at the same rate."""

    def row(rate: str, target: str, figure: Callable[[dict], float], text: str, limit: float) -> dict:
        run = light[rate]
        measured = {"target": f"{rate} units/s: {target}", "measured": text.format(figure(run))}
        if "bare_three_hops" in run:
            measured["bare"] = text.format(figure(run["bare_three_hops"]))
        return {**measured, "met": figure(run) <= limit}

    def busy(run: dict) -> float:
        return float(run["cpu"]["machine_busy"])

    rows = []
    if "50" in light:
        rows += [
            row("50", "p50 ≤ 20 ms", lambda run: run["p50"], "{} ms", 20),
            row("50", "p99 ≤ 100 ms", lambda run: run["p99"], "{} ms", 100),
            row("50", "machine ≤ 15 % busy", busy, "{:.1%}", 0.15),
        ]
    if "10" in light:
        at10 = light["10"]
        rows += [
            row("10", "p99 ≤ 50 ms", lambda run: run["p99"], "{} ms", 50),
            row("10", "machine ≤ 10 % busy", busy, "{:.1%}", 0.10),
        ]
        if "idle" in at10:
            idle = at10["idle"]["processes_busy"]
            rows.append({"target": "idle fleet ≤ 2 % of the machine", "measured": f"{idle:.1%}", "met": idle <= 0.02})
    return rows


def _light_runs(light: dict) -> list[tuple[str, dict]]:
    """Each rate's run of Rebound, then of each bare loop measured at that rate, labelled."""
    runs = []
    for rate, rebound in light.items():
        runs.append((f"{rate}/s", rebound))
        runs += [(f"{rate}/s, {name}", rebound[key]) for _, key, name in BARE_LOOPS if key in rebound]
    return runs


def light_markdown(light: dict) -> list[str]:
    rows = _light_runs(light)
    processes = sorted({name for _, run in rows for name in run["cpu"]["cpu_s"]})
    lines = [
        "",
        "Light load: inspections sent one by one at a fixed rate, each timed until its adjustment is "
        "readable (read_committed); CPU seconds while they were sent (the load generator not counted)",
        "",
        "| Offered | Units | p50 ms | p95 ms | p99 ms | max ms | Machine busy | CPU ms per unit | "
        + " | ".join(f"{name} s" for name in processes)
        + " |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in processes) + " |",
    ]
    for label, run in rows:
        cpu = run["cpu"]
        lines.append(
            f"| {label} | {run['units']:,} | {run['p50']} | {run['p95']} | {run['p99']} | {run['max']} "
            f"| {cpu['machine_busy']:.1%} | {cpu['cpu_ms_per_unit']} | "
            + " | ".join(str(cpu["cpu_s"].get(name, "")) for name in processes)
            + " |"
        )
    idle = next((run["idle"] for run in light.values() if "idle" in run), None)
    if idle:
        lines += [
            "",
            f"Idle fleet over {idle['seconds']} s: {idle['processes_busy']:.1%} of the machine "
            f"(the machine {idle['machine_busy']:.1%} busy, the benchmark's own clients included), "
            f"CPU s {idle['cpu_s']}",
        ]
    return lines


def targets(result: dict) -> list[dict]:
    """The benchmark issue's targets, each with what this run measured and whether it met it (a
    target a run did not measure, the million-unit wave without --full, is left out)."""
    insp, lat, bare = result["inspections"], result["latency_ms"], result["latency_three_hops_ms"]
    runs = [insp, *result["scale"]]
    rss = max(max(run["peak_rss_mb"].values()) for run in runs)
    rows = [
        {
            "target": "inspection → adjustment ≥ 2,000 units/s",
            "measured": f"{insp['units_per_s']:,.0f}",
            "bare": f"{result['ceiling_three_hops']['units_per_s']:,.0f}",
            "met": insp["units_per_s"] >= 2000,
        },
        {
            "target": "inspection → adjustment ≥ 0.5 × the ceiling",
            "measured": f"{result['ratio_to_ceiling']:.2f}",
            "bare": f"{result['ceiling_three_hops']['units_per_s'] / result['ceiling_units_per_s']:.2f}",
            "met": result["ratio_to_ceiling"] >= 0.5,
        },
        {
            "target": "p50 ≤ 20 ms at half load",
            "measured": f"{lat['p50']} ms",
            "bare": f"{bare['p50']} ms",
            "met": lat["p50"] <= 20,
        },
        {
            "target": "p99 ≤ 100 ms at half load",
            "measured": f"{lat['p99']} ms",
            "bare": f"{bare['p99']} ms",
            "met": lat["p99"] <= 100,
        },
        {"target": "no service above 200 MB RSS", "measured": f"{rss:.0f} MB", "met": rss <= 200},
    ]
    rows += connector_targets(result)
    rows += light_targets(result.get("light_load", {}))
    by_size = {run["units"]: run for run in result["scale"] if run["replicas"] == 1}
    if 1_000_000 in by_size and result["units"] in by_size:
        change = by_size[1_000_000]["units_per_s"] / by_size[result["units"]]["units_per_s"] - 1
        rows.append(
            {
                "target": f"1M units within 10 % of {result['units']:,}",
                "measured": f"{change:+.1%}",
                "met": change >= -0.10,
            }
        )
    return rows


def markdown(result: dict) -> str:
    top = result["ceiling_units_per_s"]
    lines = [
        f"Rebound benchmark, {result['date']}, {result['machine']['cores']} cores, "
        f"{result['machine']['ram_gib']} GiB, {result['machine']['cpu']}",
        "",
        "| Run | Units | Replicas | Units/s | vs ceiling | Peak RSS (MB, max per service) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| ceiling: bare loop, one hop | {result['ceiling']['units']:,} | 1 | {top:,.0f} | 1.00 | |",
    ]
    chain = result["ceiling_three_hops"]
    lines.append(
        f"| bare loop, three hops (a process each) | {chain['units']:,} | 1 | {chain['units_per_s']:,.0f} "
        f"| {chain['units_per_s'] / top:.2f} | |"
    )
    insp = result["inspections"]
    lines.append(
        f"| inspection → adjustment (3 hops) | {insp['units']:,} | {insp['replicas']} "
        f"| {insp['units_per_s']:,.0f} | {insp['units_per_s'] / top:.2f} "
        f"| {max(insp['peak_rss_mb'].values()):.0f} |"
    )
    for run in result["scale"]:
        lines.append(
            f"| whole wave: RMA, scan, inspection → adjustment | {run['units']:,} | {run['replicas']} "
            f"| {run['units_per_s']:,.0f} | {run['units_per_s'] / top:.2f} "
            f"| {max(run['peak_rss_mb'].values()):.0f} |"
        )
    lines += [
        "",
        f"Inspection → adjustment is {insp['units_per_s'] / chain['units_per_s']:.2f} of the bare "
        "three-hop loop: what Rebound's hops do beyond the core step.",
    ]
    lat = result["latency_ms"]
    lines += [
        "",
        f"Latency inspection → adjustment readable (read_committed), {lat['units']:,} units offered at "
        f"{lat['offered_units_per_s']:,.0f} units/s: p50 {lat['p50']} ms, p95 {lat['p95']} ms, "
        f"p99 {lat['p99']} ms, max {lat['max']} ms",
        "",
        "| Hop (record: when its producer built it; transaction: when the consumer's began) | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {hop} | {spans['p50']} | {spans['p99']} |" for hop, spans in lat["hops"].items()]
    bare = result["latency_three_hops_ms"]
    lines += [
        "",
        f"The three-hop bare loop at the same load, tuned for latency as the services are "
        f"({bare['units']:,} units at {bare['offered_units_per_s']:,.0f} units/s): p50 {bare['p50']} ms, "
        f"p95 {bare['p95']} ms, p99 {bare['p99']} ms, max {bare['max']} ms",
    ]
    if "light_load" in result:
        lines += light_markdown(result["light_load"])
    lines += connectors.markdown(result["connectors"])
    lines += ["", "| Target | Rebound | Bare loop, three hops | Met by Rebound |", "| --- | ---: | ---: | --- |"]
    lines += [
        f"| {row['target']} | {row['measured']} | {row.get('bare', '')} | {'yes' if row['met'] else 'no'} |"
        for row in result["targets"]
    ]
    return "\n".join(lines)


async def main(full: bool, units: int, ceiling_units: int, latency_s: float) -> dict:
    settings = Settings.from_env()
    await ensure_topics(settings.kafka_bootstrap_servers)
    pool = await create_pool(settings.database_url)
    await migrate(pool)
    logs = OUT / "logs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    print(f"ceiling: {ceiling_units:,} units through the bare loop ...", flush=True)
    top = await ceiling.measure(settings.kafka_bootstrap_servers, settings.database_url, ceiling_units)
    print(f"  {top['units_per_s']:,.0f} units/s", flush=True)
    print(f"bare loop, three hops: {ceiling_units:,} units, a process per hop ...", flush=True)
    chain = await ceiling.measure_chain(settings.kafka_bootstrap_servers, settings.database_url, ceiling_units)
    print(f"  {chain['units_per_s']:,.0f} units/s", flush=True)
    print(f"inspection → adjustment: {units:,} units (returns, parcels and units registered first) ...", flush=True)
    insp = await pipeline.inspections(settings, units, 1, logs / f"inspections-{units}", timeout=3600)
    insp["tables"] = await table_sizes(pool)
    print(f"  {insp['units_per_s']:,.0f} units/s in {insp['seconds']} s", flush=True)
    scale = []

    async def wave(size: int, replicas: int) -> None:
        print(f"whole wave: {size:,} units, {replicas} replica(s) per service ...", flush=True)
        run = await pipeline.throughput(settings, size, replicas, logs / f"{size}-{replicas}", timeout=3600)
        run["tables"] = await table_sizes(pool)
        print(f"  {run['units_per_s']:,.0f} units/s in {run['seconds']} s", flush=True)
        scale.append(run)

    for size, replicas in [(10_000, 1), (units, 1), (units, 2)]:
        await wave(size, replicas)
    half = insp["units_per_s"] / 2
    print(f"latency: inspections offered at {half:,.0f} units/s for {latency_s:.0f} s ...", flush=True)
    lat = await pipeline.latency(settings, half, latency_s, logs / "latency")
    print(f"  p50 {lat['p50']} ms, p99 {lat['p99']} ms", flush=True)
    print(f"latency of the three-hop bare loop at the same {half:,.0f} units/s ...", flush=True)
    bare = await ceiling.measure_chain_latency(settings.kafka_bootstrap_servers, settings.database_url, half, latency_s)
    print(f"  p50 {bare['p50']} ms, p99 {bare['p99']} ms", flush=True)
    light = await light_load(settings, latency_s, logs)
    storefronts = await connectors.measure(settings, pool, logs / "connectors")
    if full:
        # Last: PostgreSQL is still writing back the checkpoints of a million units' writes for
        # minutes after it, and a latency measured then is one of the disk's.
        await wave(1_000_000, 1)
    await pool.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "ceiling": top,
        "ceiling_units_per_s": top["units_per_s"],
        "ceiling_three_hops": chain,
        "e2e_units_per_s": insp["units_per_s"],
        "ratio_to_ceiling": round(insp["units_per_s"] / top["units_per_s"], 2),
        "units": units,
        "replicas": insp["replicas"],
        "latency_ms": lat,
        "latency_three_hops_ms": bare,
        "light_load": light,
        "inspections": insp,
        "scale": scale,
        "connectors": storefronts,
    }


async def light_only(seconds: float) -> dict:
    settings = Settings.from_env()
    await ensure_topics(settings.kafka_bootstrap_servers)
    pool = await create_pool(settings.database_url)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    logs = OUT / "logs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "light_load": await light_load(settings, seconds, logs),
    }


async def connectors_only() -> dict:
    settings = Settings.from_env()
    await ensure_topics(settings.kafka_bootstrap_servers)
    pool = await create_pool(settings.database_url)
    await migrate(pool)
    try:
        logs = OUT / "logs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "connectors": await connectors.measure(settings, pool, logs / "connectors"),
        }
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="add the 1,000,000-unit scale run")
    parser.add_argument("--units", type=int, default=100_000, help="units of the end-to-end and 100k scale runs")
    parser.add_argument(
        "--ceiling-units",
        type=int,
        default=50_000,
        help="units through the bare loop, and through the three-hop bare loop",
    )
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="how long to offer the fixed load")
    parser.add_argument(
        "--connectors",
        action="store_true",
        help="only the connectors against the marketplace stand-ins (about 2 minutes)",
    )
    parser.add_argument(
        "--light-load",
        action="store_true",
        help=f"only the light-load step: {', '.join(map(str, LIGHT_RATES))} units/s, --latency-seconds each",
    )
    args = parser.parse_args()
    configure("warning")
    began = time.monotonic()
    if args.light_load:
        light = asyncio.run(light_only(args.latency_seconds))
        light["targets"] = light_targets(light["light_load"])
        OUT.mkdir(exist_ok=True)
        (OUT / "light-load.json").write_text(json.dumps(light, indent=2))
        print("\n".join(light_markdown(light["light_load"])))
        print(
            "\n".join(
                f"{row['target']}: {row['measured']} ({'met' if row['met'] else 'not met'})"
                + (f"; the three-hop bare loop: {row['bare']}" if "bare" in row else "")
                for row in light["targets"]
            )
        )
        raise SystemExit(0)
    if args.connectors:
        alone = asyncio.run(connectors_only())
        alone["targets"] = connector_targets(alone)
        OUT.mkdir(exist_ok=True)
        (OUT / "connectors.json").write_text(json.dumps(alone, indent=2))
        print("\n".join(connectors.markdown(alone["connectors"])))
        print(
            "\n".join(
                f"{row['target']}: {row['measured']} ({'met' if row['met'] else 'not met'})" for row in alone["targets"]
            )
        )
        raise SystemExit(0)
    result = asyncio.run(main(args.full, args.units, args.ceiling_units, args.latency_seconds))
    result["bench_seconds"] = round(time.monotonic() - began)
    result["targets"] = targets(result)
    OUT.mkdir(exist_ok=True)
    (OUT / "latest.json").write_text(json.dumps(result, indent=2))
    print()
    print(markdown(result))
    print(f"\n(.bench/latest.json; {result['bench_seconds']} s)")
