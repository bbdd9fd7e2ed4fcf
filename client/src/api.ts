// Every call to the API goes through this module.
// Values stay strings end to end: F(79) already exceeds Number.MAX_SAFE_INTEGER.

export type StatusName = "pending" | "done" | "failed";

export interface Status {
  index: number;
  status: StatusName;
  digits: number | null;
  head: string | null;
  tail: string | null;
  value: string | null; // the whole value, only when it has at most 1,000 digits
  compute_ms: number | null;
  error: string | null;
}

export interface Submission {
  number: number;
}

/** The API answered with an error it explains (4xx): show its message. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(message: string, status: number, code: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The API could not be reached, or says a backing service is down. */
export class ApiUnavailableError extends Error {
  constructor(message = "The server can't be reached right now.") {
    super(message);
    this.name = "ApiUnavailableError";
  }
}

async function errorMessage(response: Response): Promise<{ error?: string; code?: string }> {
  try {
    return (await response.json()) as { error?: string; code?: string };
  } catch {
    return {};
  }
}

async function send(path: string, init?: RequestInit): Promise<Response> {
  let response: Response;
  try {
    // Absolute, so the same code runs in the browser and under Node in tests.
    response = await fetch(new URL(path, window.location.href), init);
  } catch {
    throw new ApiUnavailableError();
  }
  if (response.ok) return response;
  const body = await errorMessage(response);
  if (response.status >= 500) throw new ApiUnavailableError(body.error);
  throw new ApiError(body.error ?? `Request failed (${response.status}).`, response.status, body.code ?? "error");
}

async function json<T>(path: string, init?: RequestInit): Promise<T> {
  return (await (await send(path, init)).json()) as T;
}

/** A submission's stages, in milliseconds since it was accepted; null: not reached (or never will be). */
export interface Stages {
  accepted: number;
  committed: number | null;
  queued: number | null;
  started: number | null;
  done: number | null;
  announced: number | null;
}

export interface Timeline {
  index: number;
  age_seconds: number;
  outcome: "waiting" | "done" | "failed" | "computed before";
  stages: Stages;
}

/** GET /api/system: all but `ready` are null while Redis is unavailable. */
export interface SystemState {
  ready: { postgres: string; redis: string };
  api: { processes: number } | null;
  queue: { depth: number; oldest_age_seconds: number | null } | null;
  workers: { alive: number; busy: number } | null;
  rates: {
    submissions_per_second: number;
    computations_per_second: number;
    refused_per_second: number;
    rate_capped: boolean;
  } | null;
  refused: Record<string, number> | null;
  recent: Timeline[] | null;
  /** The reconcile pass's last figures; null before the first pass (or while Redis is unavailable). */
  reconcile: {
    age_seconds: number;
    pending: number;
    healed: number;
    healed_total: number;
    heal_within_seconds: number;
  } | null;
  window_seconds: number;
}

export const api = {
  system: () => json<SystemState>("/api/system"),
  seen: () => json<Submission[]>("/api/values/all"),
  recent: () => json<Status[]>("/api/values/recent"),
  submit: (index: string) =>
    json<Status & { working: true }>("/api/values", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ index }),
    }),
  decimal: async (index: number) => (await send(decimalUrl(index))).text(),
};

export function decimalUrl(index: number): string {
  return `/api/values/${index}/decimal`;
}

export const EVENTS_URL = "/api/events";
