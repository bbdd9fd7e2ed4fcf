"""The bench's floors for a submission: what any POST costs under Flask and the API's gunicorn settings.

FLOOR_APP chooses how much of a submission it does:

- "flask": Flask reads the JSON body and answers 202 with a small dict: the
  least any Flask view under this gunicorn worker costs, with no I/O.
- "durable": the same, after the least a durable 202 needs: one Redis write
  (the index marked pending) and one Postgres INSERT, committed, per POST.
  No group commit, no admission, no job: only the two round trips.

Whatever the API costs above "durable" is its own work; what "durable"
costs is the stack's (course.py prints both beside the course's app).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool
from redis import Redis

DURABLE = os.environ.get("FLOOR_APP", "flask") == "durable"

app = Flask(__name__)
if DURABLE:
    redis = Redis(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]))
    pool = ConnectionPool(
        make_conninfo(
            host=os.environ["PGHOST"],
            port=os.environ["PGPORT"],
            user=os.environ["PGUSER"],
            password=os.environ["PGPASSWORD"],
            dbname=os.environ["PGDATABASE"],
        ),
        min_size=1,
        max_size=10,
        kwargs={"autocommit": True},
        open=True,
    )


@app.post("/api/values")
def submit() -> tuple[dict[str, Any], int]:
    index = int(request.get_json()["index"])
    if DURABLE:
        redis.hset(f"floor:{index}", "status", "pending")
        with pool.connection() as conn:
            conn.execute("INSERT INTO submissions (number) VALUES (%s)", (index,))
    return {"index": index, "status": "pending"}, 202


@app.get("/api/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
