import { useQueryClient } from "@tanstack/react-query";
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiUnavailableError, type Stages, type SystemState, type Timeline } from "../api";
import { keys, useSystem } from "../queries";
import { useLiveResults } from "../useLiveResults";

// At most one extra request a second however many events arrive: each API
// process keeps its answer that long anyway.
const EVENT_REFRESH_MS = 1000;

/**
 * The live system page: each service and what it is doing now, and the last
 * submissions as timelines of their stages, from GET /api/system. It asks
 * again every few seconds and soon after each event of the live stream.
 */
export function SystemPage() {
  const [paused, setPaused] = useState(false);
  const system = useSystem(paused);
  const onEvent = useThrottledRefresh(paused);
  const { connected } = useLiveResults(onEvent);
  const state = system.data;
  const apiDown = system.error instanceof ApiUnavailableError || (system.error !== null && !state);

  return (
    <div className="system-page">
      <h2>The system, live</h2>
      <p>
        How a submission crosses the services, and what each is doing now. Read from{" "}
        <a href="/api/system">GET /api/system</a>.
      </p>
      <div className="system-page__controls">
        <button type="button" aria-pressed={paused} onClick={() => setPaused((value) => !value)}>
          {paused ? "Resume live updates" : "Pause live updates"}
        </button>
        <span className="live-indicator" data-connected={connected && !paused}>
          {paused ? "Paused." : connected ? "Live." : "Connecting to live updates…"}
        </span>
      </div>
      {apiDown && (
        <div className="banner" role="alert">
          We can't reach the API right now; this page tries again by itself.
        </div>
      )}
      {state && <Services state={state} apiReachable={!apiDown} />}
      {state && <RecentSubmissions recent={state.recent} />}
    </div>
  );
}

/** Refetches the page's data at an event, at most once per EVENT_REFRESH_MS. */
function useThrottledRefresh(paused: boolean): () => void {
  const queryClient = useQueryClient();
  const last = useRef(0);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (paused || timer.current !== undefined) return;
    const refresh = () => {
      timer.current = undefined;
      last.current = Date.now();
      // One request in flight at most: an event never cancels one on its way.
      void queryClient.invalidateQueries({ queryKey: keys.system }, { cancelRefetch: false });
    };
    timer.current = setTimeout(refresh, Math.max(0, last.current + EVENT_REFRESH_MS - Date.now()));
  }, [paused, queryClient]);
}

type Health = "ok" | "down" | "idle" | "busy";

interface Service {
  name: string;
  role: string;
  health: Health;
  facts: [string, string][];
}

function services(state: SystemState, apiReachable: boolean): Service[] {
  const redisUp = state.ready.redis === "ok";
  const { api, queue, workers, rates, refused, reconcile } = state;
  const perSecond = (value: number | undefined) => (value === undefined ? "unknown" : `${value} /s${rates?.rate_capped ? " or more" : ""}`);
  const refusedBy = Object.entries(refused ?? {}).map(([reason, count]) => `${count} (${reason})`).join(", ");
  return [
    {
      name: "Router",
      role: "nginx: sends /api to the API and the rest to the client",
      health: "ok",
      facts: [["Answering", "yes (this page came through it)"]],
    },
    {
      name: "API",
      role: "Flask under gunicorn: validates, records, queues; refuses new work past its bounds",
      // What follows is its last answer, kept on screen while it cannot be reached.
      health: apiReachable ? "ok" : "down",
      facts: [
        ["Processes alive", api ? String(api.processes) : "unknown"],
        ["Submissions", perSecond(rates?.submissions_per_second)],
        ["Refused", rates ? `${perSecond(rates.refused_per_second)}${refusedBy ? `: ${refusedBy}` : ""}` : "unknown"],
      ],
    },
    {
      name: "Postgres",
      role: "the truth: every submission, every index's state and its small values",
      health: state.ready.postgres === "ok" ? "ok" : "down",
      facts: [
        ["Ready", readiness(state.ready.postgres)],
        ["Last reconcile", reconcile ? `${seconds(reconcile.age_seconds)} ago, ${reconcile.pending} pending looked at` : "none yet"],
        ["Lost jobs queued again", reconcile ? `${reconcile.healed} then, ${reconcile.healed_total} in all` : "none yet"],
        ["Heals within", reconcile ? seconds(reconcile.heal_within_seconds) : "unknown"],
      ],
    },
    {
      name: "Redis",
      role: "the queue, the event streams and bounded caches of statuses and values",
      health: redisUp ? "ok" : "down",
      facts: [["Ready", readiness(state.ready.redis)]],
    },
    {
      name: "Queue",
      role: "RQ's jobs, waiting for a worker",
      health: !queue ? "down" : queue.depth > 0 ? "busy" : "idle",
      facts: [
        ["Jobs waiting", queue ? String(queue.depth) : "unknown"],
        ["Oldest waiting", queue?.oldest_age_seconds != null ? seconds(queue.oldest_age_seconds) : "none"],
      ],
    },
    {
      name: "Workers",
      role: "RQ workers: compute F(n), store it, announce it",
      health: !workers ? "down" : workers.alive === 0 ? "down" : workers.busy > 0 ? "busy" : "idle",
      facts: [
        ["Alive", workers ? String(workers.alive) : "unknown"],
        ["Busy", workers ? String(workers.busy) : "unknown"],
        ["Computations", perSecond(rates?.computations_per_second)],
      ],
    },
  ];
}

const HEALTH_LABELS: Record<Health, string> = { ok: "up", down: "down", idle: "idle", busy: "busy" };

function Services({ state, apiReachable }: { state: SystemState; apiReachable: boolean }) {
  return (
    <section aria-labelledby="services-heading">
      <h3 id="services-heading">Services</h3>
      <p className="system-page__note">
        Rates over the last {state.window_seconds} s. Arrows show a submission's way: the API records it in Postgres
        and queues it in Redis; a worker takes it, computes it and announces the result.
      </p>
      <ol className="services" aria-label="Services, in the order a submission reaches them">
        {services(state, apiReachable).map((service) => (
          <li key={service.name} className="service" data-health={service.health}>
            <div className="service__head">
              <h4>{service.name}</h4>
              <span className="service__health">{HEALTH_LABELS[service.health]}</span>
            </div>
            <p className="service__role">{service.role}</p>
            <dl>
              {service.facts.map(([label, value]) => (
                <div key={label}>
                  <dt>{label}</dt>
                  <dd>{value}</dd>
                </div>
              ))}
            </dl>
          </li>
        ))}
      </ol>
    </section>
  );
}

// The stage each one follows (server/fibapi/timeline.py's AFTER): Postgres
// records a submission before its job is queued.
const STAGES: { name: keyof Stages; after?: keyof Stages }[] = [
  { name: "accepted" },
  { name: "committed", after: "accepted" },
  { name: "queued", after: "committed" },
  { name: "started", after: "queued" },
  { name: "done", after: "started" },
  { name: "announced", after: "done" },
];

function RecentSubmissions({ recent }: { recent: Timeline[] | null }) {
  return (
    <section aria-labelledby="recent-heading">
      <h3 id="recent-heading">Last submissions</h3>
      {recent === null && <p>Unknown while Redis is unavailable.</p>}
      {recent?.length === 0 && <p>None yet: submit an index on the calculator page.</p>}
      <ol className="timelines">
        {recent?.map((timeline, position) => (
          <TimelineItem key={`${timeline.index}-${position}-${timeline.age_seconds}`} timeline={timeline} />
        ))}
      </ol>
    </section>
  );
}

function TimelineItem({ timeline }: { timeline: Timeline }) {
  const { stages } = timeline;
  const reached = STAGES.filter(({ name }) => stages[name] !== null);
  const total = Math.max(...reached.map(({ name }) => stages[name] ?? 0));
  return (
    <li className="timeline" data-outcome={timeline.outcome}>
      <p className="timeline__title">
        <strong>F({timeline.index})</strong> {timeline.outcome}, {seconds(timeline.age_seconds)} ago
        {reached.length > 1 && <>, {ms(total)} in all</>}
      </p>
      <div className="timeline__track" aria-hidden="true">
        {reached.map(({ name }) => (
          <span
            key={name}
            className="timeline__mark"
            data-stage={name}
            style={{ left: `${total > 0 ? ((stages[name] ?? 0) / total) * 100 : 0}%` }}
          />
        ))}
      </div>
      <ol className="stages">
        {STAGES.map(({ name, after }) => (
          <li key={name} className="stage" data-stage={name} data-reached={stages[name] !== null}>
            <span className="stage__name">{name}</span> <span className="stage__took">{took(stages, name, after)}</span>
          </li>
        ))}
      </ol>
    </li>
  );
}

function took(stages: Stages, name: keyof Stages, after: keyof Stages | undefined): string {
  const at = stages[name];
  if (at === null) return "not reached";
  if (!after) return "at 0 ms";
  const before = stages[after];
  return before === null ? ms(at) : `+${ms(at - before)} after ${after}`;
}

function readiness(answer: string): string {
  return answer === "ok" ? "yes" : `no (${answer})`;
}

function seconds(value: number): string {
  return value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function ms(value: number): string {
  if (value < 10) return `${value.toFixed(1)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(2)} s`;
}
