import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";
import type { Status, Submission } from "../api";

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

/** In-memory API state for the default handlers; tests set it up per case. */
export const db: { seen: Submission[]; recent: Status[] } = { seen: [], recent: [] };

export const handlers = [
  http.get("*/api/values/all", () => HttpResponse.json(db.seen)),
  http.get("*/api/values/recent", () => HttpResponse.json(db.recent)),
];

export const server = setupServer(...handlers);

export function resetDb(): void {
  db.seen = [];
  db.recent = [];
}
