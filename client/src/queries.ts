import { useQuery } from "@tanstack/react-query";
import { api, type Status } from "./api";

export const keys = { seen: ["values", "seen"], recent: ["values", "recent"], system: ["system"] } as const;

// While a list cannot be loaded, try again every few seconds, so the page
// recovers by itself when the API is back.
const RETRY_WHILE_FAILING_MS = 5000;
const refetchInterval = (query: { state: { error: unknown } }) => (query.state.error ? RETRY_WHILE_FAILING_MS : false);

export function useSeenIndexes() {
  return useQuery({ queryKey: keys.seen, queryFn: api.seen, refetchInterval });
}

export function useRecentValues() {
  return useQuery({ queryKey: keys.recent, queryFn: api.recent, refetchInterval });
}

/** The list with `status` put in place: updated where present, else added first. */
export function upsertStatus(list: Status[] | undefined, status: Status): Status[] {
  const items = list ?? [];
  const at = items.findIndex((item) => item.index === status.index);
  if (at === -1) return [status, ...items];
  return items.map((item, position) => (position === at ? status : item));
}

/**
 * The list with `index` first, for a submission the API just accepted.
 *
 * An entry already there keeps its status: the event stream may have
 * delivered a newer one (even "done") before the POST response arrived,
 * and that response's status is older than the event's.
 */
export function placeFirst(list: Status[] | undefined, submitted: Status): Status[] {
  const items = list ?? [];
  const existing = items.find((item) => item.index === submitted.index);
  return [existing ?? submitted, ...items.filter((item) => item.index !== submitted.index)];
}

// The system page asks this often as well as at each event: rates and ages
// move while no event comes. Each API process keeps its answer about a
// second, so more often would only be asked again.
export const SYSTEM_REFRESH_MS = 2000;

export function useSystem(paused = false) {
  return useQuery({ queryKey: keys.system, queryFn: api.system, refetchInterval: paused ? false : SYSTEM_REFRESH_MS });
}
