"""The last few submissions, each as the timeline of its stages (the system page).

accepted (the API validated it), committed (its row is in Postgres),
queued (the queueing script ran), started and done (the worker's
computation), announced (the worker's event is in the stream every API
process follows). Nothing is written for this alone: the API stamps the
lists-changes entry it appends after each commit anyway, the worker the
event it appends anyway (contract.TIMELINE_FIELD, contract.EVENT_STAMPS),
and GET /api/system joins the two by job id.

Each stamp is by the clock of the process that made it: the API's for
accepted, queued and committed, the worker's for started and done, Redis's
for announced (the event's id, in whole milliseconds). So each stage is
shown no earlier than the one it must follow (AFTER): what a coarser or
offset clock would put before it happened, at the same moment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import contract

if TYPE_CHECKING:
    from . import submissions as submitted
    from .db import Recorded

# Stage names, in the order a new index passes them (Postgres first, then the
# queue: docs/state.md). Each stage is given as the time since accepted.
STAGES = ("accepted", "committed", "queued", "started", "done", "announced")
# The stage each one cannot happen before.
AFTER = {"committed": "accepted", "queued": "committed", "started": "queued", "done": "started", "announced": "done"}
# The field only the worker's events carry, naming the job that ended (contract.EVENT_STAMPS).
JOB_FIELD = contract.EVENT_STAMPS[0].encode()
# Events are read from this long before the oldest shown submission, so a
# worker or Redis whose clock runs behind the API's is not missed.
CLOCK_MARGIN_MS = 5000


def stamps(
    group: list[submitted.Submission], recorded: dict[int, Recorded], committed_at: float, queued_at: float
) -> str:
    """The lists-changes entry's timeline field for a group's accepted submissions (contract.TIMELINE_FIELD)."""
    first = {s.index: s for s in reversed(group)}
    submissions = []
    # Only the last few are stamped: a big group costs no more than a small one.
    for s in group[-contract.TIMELINE_MAX :]:
        found = recorded[s.index]
        state = "queued" if found.queued_now and first[s.index] is s else found.fields["status"]
        job = found.job if state in ("queued", contract.PENDING) else ""
        submissions.append([s.index, _ms(s.accepted), state, job])
    entry = {"committed": _ms(committed_at), "queued": _ms(queued_at), "submissions": submissions}
    return json.dumps(entry, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Submission:
    index: int
    accepted: float  # Unix ms, as every stamp here
    committed: float
    queued: float
    state: str  # when it was queued: "queued" now, or "pending", "done", "failed" already
    job: str


def submissions(changes: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> list[Submission]:
    """The newest contract.TIMELINE_MAX submissions stamped in lists-changes entries (newest first)."""
    found: list[Submission] = []
    for _, fields in changes:
        try:
            entry = json.loads(fields[contract.TIMELINE_FIELD.encode()])
            group = [
                Submission(int(index), float(accepted), float(entry["committed"]), float(entry["queued"]), state, job)
                for index, accepted, state, job in entry["submissions"]
            ]
        except (KeyError, ValueError, TypeError):
            continue  # unstamped (a group whose stamps could not be made) or not ours
        found += reversed(group)
        if len(found) >= contract.TIMELINE_MAX:
            break
    return found[: contract.TIMELINE_MAX]


def computed_by_a_job(submission: Submission) -> bool:
    """Whether a computation of `submission`'s may be in the events: its index was queued, by it or before it."""
    return bool(submission.job) and submission.state in ("queued", contract.PENDING)


def events_from(shown: list[Submission], window_start: int) -> int:
    """Where to start reading the events stream (Unix ms): the window's start, or earlier for `shown`'s computations.

    Only those computed by a job count: a burst of events after submissions
    of indexes computed before is not read for them.
    """
    sought = [s.accepted for s in shown if computed_by_a_job(s)]
    return min(window_start, int(min(sought) - CLOCK_MARGIN_MS)) if sought else window_start


def entry_ms(entry_id: bytes) -> int:
    """The Unix ms of a stream entry's id ("<ms>-<seq>"): Redis's clock when it was appended."""
    return int(entry_id.split(b"-", 1)[0])


def drawn(
    shown: list[Submission], events: Iterable[tuple[bytes, dict[bytes, bytes]]], now: float
) -> list[dict[str, Any]]:
    """Each of `shown` as GET /api/system gives it, its stages joined with the events of its job."""
    wanted = {s.job.encode() for s in shown if computed_by_a_job(s)}
    computed: dict[tuple[str, int], tuple[str | None, float, float, float]] = {}
    for entry_id, fields in events:
        job = fields.get(JOB_FIELD)
        if job not in wanted:
            continue
        try:
            status = json.loads(fields[b"data"])
            key = (job.decode(), int(status["index"]))
            announced = float(entry_ms(entry_id))
            computed.setdefault(key, (status["status"], float(fields[b"started"]), float(fields[b"done"]), announced))
        except (KeyError, ValueError, TypeError):
            continue
    return [_drawn(s, computed.get((s.job, s.index)), now) for s in shown]


def _drawn(s: Submission, computed: tuple[str | None, float, float, float] | None, now: float) -> dict[str, Any]:
    at = {"accepted": s.accepted, "committed": s.committed, "queued": s.queued}
    if computed is not None:
        outcome, at["started"], at["done"], at["announced"] = computed
    elif s.state in (contract.DONE, contract.FAILED):
        outcome = "computed before"
    else:
        outcome = "waiting"
    # Milliseconds since accepted, or None for a stage it has not reached (or never will).
    stages: dict[str, float | None] = {"accepted": 0.0}
    for name in STAGES[1:]:
        before = stages[AFTER[name]]
        stages[name] = round(max(before, at[name] - s.accepted), 1) if name in at and before is not None else None
    return {
        "index": s.index,
        "age_seconds": round(max(0.0, now - s.accepted / 1000), 1),
        "outcome": outcome,
        "stages": stages,
    }


def _ms(unix_seconds: float) -> float:
    return round(unix_seconds * 1000, 1)
