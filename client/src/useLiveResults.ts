import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { EVENTS_URL, type Status } from "./api";
import { keys, upsertStatus } from "./queries";

const MAX_RETRY_MS = 15_000;

/**
 * Follows the API's event stream and applies each status change to the cached
 * lists, so every open tab updates without a reload.
 *
 * The browser's EventSource reconnects by itself after a dropped connection
 * (sending Last-Event-ID, so the API replays what was missed). It gives up
 * when the server answers with an error, as a router does while the API
 * restarts; then this hook opens a new stream with back-off and refetches
 * the lists, since a new stream cannot replay.
 */
export function useLiveResults(onStatus?: (status: Status) => void): { connected: boolean } {
  const queryClient = useQueryClient();
  const [connected, setConnected] = useState(false);
  const onStatusRef = useRef(onStatus);

  useEffect(() => {
    onStatusRef.current = onStatus;
  }, [onStatus]);

  useEffect(() => {
    let source: EventSource | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let delay = 1000;
    let opened = false;

    // An event is newer than any answer to a list request already on its way:
    // that answer would overwrite it (a page opened a moment before another
    // tab submits never showed the result). So such a request is cancelled,
    // the event applied, and the list asked for again.
    // Events are applied one after another, in the order they came.
    let applied = Promise.resolve();
    const apply = async (status: Status) => {
      const loading = queryClient.isFetching({ queryKey: keys.recent }) > 0;
      if (loading) await queryClient.cancelQueries({ queryKey: keys.recent });
      queryClient.setQueryData<Status[]>(keys.recent, (list) => upsertStatus(list, status));
      if (loading) void queryClient.invalidateQueries({ queryKey: keys.recent });
    };
    const applyStatus = (status: Status) => {
      applied = applied.then(() => apply(status));
      return applied;
    };

    const connect = () => {
      source = new EventSource(EVENTS_URL);
      source.onopen = () => {
        setConnected(true);
        delay = 1000;
        if (opened) void queryClient.invalidateQueries({ queryKey: ["values"] });
        opened = true;
      };
      source.addEventListener("status", (event: MessageEvent<string>) => {
        const status = JSON.parse(event.data) as Status;
        void applyStatus(status);
        if (status.status === "pending") void queryClient.invalidateQueries({ queryKey: keys.seen });
        onStatusRef.current?.(status);
      });
      source.onerror = () => {
        setConnected(false);
        if (source?.readyState === EventSource.CLOSED) {
          source.close();
          timer = setTimeout(connect, delay);
          delay = Math.min(delay * 2, MAX_RETRY_MS);
        }
      };
    };

    connect();
    return () => {
      clearTimeout(timer);
      source?.close();
    };
  }, [queryClient]);

  return { connected };
}
