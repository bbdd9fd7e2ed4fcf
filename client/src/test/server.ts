import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";
import type { Status, Submission, SystemState } from "../api";

export function status(index: number, fields: Partial<Status> = {}): Status {
  return {
    index,
    status: "pending",
    digits: null,
    head: null,
    tail: null,
    value: null,
    compute_ms: null,
    error: null,
    ...fields,
  };
}

export function done(index: number, value: string, compute_ms = 0.05): Status {
  return status(index, { status: "done", value, digits: value.length, head: value.slice(0, 20), tail: value.slice(-20), compute_ms });
}

/** GET /api/system of an idle system with one worker, one API process and nothing submitted. */
export function idleSystem(): SystemState {
  return {
    ready: { postgres: "ok", redis: "ok" },
    api: { processes: 1 },
    queue: { depth: 0, oldest_age_seconds: null },
    workers: { alive: 1, busy: 0 },
    rates: { submissions_per_second: 0, computations_per_second: 0, refused_per_second: 0, rate_capped: false },
    refused: {},
    recent: [],
    reconcile: null,
    window_seconds: 10,
  };
}

/** In-memory API state for the default handlers; tests set it up per case. */
export const db: { seen: Submission[]; recent: Status[]; system: SystemState; systemAsked: number } = {
  seen: [],
  recent: [],
  system: idleSystem(),
  systemAsked: 0,
};

export const handlers = [
  http.get("*/api/system", () => {
    db.systemAsked += 1;
    return HttpResponse.json(db.system);
  }),
  http.get("*/api/values/all", () => HttpResponse.json(db.seen)),
  http.get("*/api/values/recent", () => HttpResponse.json(db.recent)),
];

export const server = setupServer(...handlers);

export function resetDb(): void {
  db.seen = [];
  db.recent = [];
  db.system = idleSystem();
  db.systemAsked = 0;
}
