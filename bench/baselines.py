"""What every figure of `make bench` is measured against: the servers' settings, and their own speed.

The benchmark's Postgres and Redis run with the settings production uses
(fsync on, as the Compose files, k8s/ and the managed services do;
Redis with its append-only file and the shipped maxmemory), and this prints
them, so a figure is never one of settings no user runs. Then the baselines
of this run on this machine: the disk's fsync rate (pg_test_fsync), and how
many durable one-row commits this Postgres makes a second, alone and with 50
clients (pgbench, which Postgres itself ships).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import psycopg
from redis import Redis

from stack.servers import PostgresServer, postgres_bindir


def print_settings(postgres: PostgresServer, env: dict[str, str]) -> None:
    print("## The servers, with production's settings\n")
    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=postgres.user, password=postgres.password, dbname=postgres.database
    ) as conn:
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
        pg = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}  # type: ignore[index]
    redis = Redis(port=int(env["REDIS_PORT"]), password=env.get("REDIS_PASSWORD"))
    keys = ("appendonly", "appendfsync", "maxmemory", "maxmemory-policy")
    rd = {key: redis.config_get(key)[key] for key in keys}
    rd["version"] = redis.info("server")["redis_version"]
    print("| server | settings |")
    print("|:---|:---|")
    print(f"| PostgreSQL | {', '.join(f'{k}={v}' for k, v in pg.items())} |")
    print(f"| Redis | {', '.join(f'{k}={v}' for k, v in rd.items())} |")
    assert pg["fsync"] == "on", "the benchmark's Postgres must be durable"
    assert pg["synchronous_commit"] == "on", "the benchmark's Postgres must be durable"
    assert rd["appendonly"] == "yes", "the benchmark's Redis must keep its append-only file, as production does"
    print()


def bench_durable_commits(postgres: PostgresServer) -> None:
    print("## Baselines: this disk's fsyncs, this Postgres's durable one-row commits\n")
    bindir = postgres_bindir()
    with tempfile.TemporaryDirectory(dir=postgres.workdir) as scratch:
        fsync = subprocess.run(
            [str(bindir / "pg_test_fsync"), "-s", "1", "-f", str(Path(scratch) / "probe")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rates = re.findall(r"^\s+fdatasync\s+([\d.]+) ops/sec", fsync, re.MULTILINE)
    print(f"pg_test_fsync: fdatasync {float(rates[0]):,.0f}/s (one 8 kB write each)\n" if rates else fsync)
    env = {"PGPASSWORD": postgres.password, "PATH": "/usr/bin:/bin"}
    common = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", postgres.user, postgres.database]
    subprocess.run(
        [str(bindir / "psql"), *common, "-qc", "CREATE TABLE IF NOT EXISTS bench_commits (n int)"],
        env=env,
        check=True,
        capture_output=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write("INSERT INTO bench_commits VALUES (1);\n")
        script.flush()
        print("| clients | durable commits/s |")
        print("|---:|---:|")
        for clients in (1, 50):
            out = subprocess.run(
                [str(bindir / "pgbench"), "-n", "-f", script.name, "-c", str(clients), "-j", "2", "-T", "5", *common],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            tps = re.search(r"tps = ([\d.]+)", out)
            print(f"| {clients} | {float(tps.group(1)) if tps else 0:,.0f} |")
    print()
