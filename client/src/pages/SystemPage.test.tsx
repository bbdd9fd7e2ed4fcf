import { act, screen, waitFor, within } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { SystemState } from "../api";
import { FakeEventSource } from "../test/fakeEventSource";
import { renderApp } from "../test/render";
import { db, done, idleSystem, resetDb, server } from "../test/server";

beforeEach(resetDb);
afterEach(() => vi.useRealTimers());

/** A service's box: its name, health and facts. */
const service = async (name: string) => (await screen.findByRole("heading", { name, level: 4 })).closest("li")!;
const fact = (box: HTMLElement, label: string) => within(box).getByText(label).nextElementSibling?.textContent;

function busySystem(): SystemState {
  return {
    ...idleSystem(),
    api: { processes: 3 },
    queue: { depth: 12, oldest_age_seconds: 4.25 },
    workers: { alive: 2, busy: 2 },
    rates: { submissions_per_second: 7.5, computations_per_second: 6.1, refused_per_second: 0.4, rate_capped: false },
    refused: { queue: 4 },
    reconcile: { age_seconds: 3.5, pending: 40, healed: 2, healed_total: 9, heal_within_seconds: 20 },
    recent: [
      {
        index: 30,
        age_seconds: 1.2,
        outcome: "done",
        stages: { accepted: 0, committed: 0.8, queued: 1.1, started: 1.5, done: 1.9, announced: 2.4 },
      },
      {
        index: 12,
        age_seconds: 3,
        outcome: "computed before",
        stages: { accepted: 0, committed: 0.6, queued: null, started: null, done: null, announced: null },
      },
    ],
  };
}

describe("the system page", () => {
  it("shows each service and what it is doing now", async () => {
    db.system = busySystem();
    renderApp("/system");
    const api = await service("API");
    expect(fact(api, "Processes alive")).toBe("3");
    expect(fact(api, "Submissions")).toBe("7.5 /s");
    expect(fact(api, "Refused")).toBe("0.4 /s: 4 (queue)");
    const queue = await service("Queue");
    expect(within(queue).getByText("busy")).toBeInTheDocument();
    expect(fact(queue, "Jobs waiting")).toBe("12");
    expect(fact(queue, "Oldest waiting")).toBe("4.3 s");
    const workers = await service("Workers");
    expect([fact(workers, "Alive"), fact(workers, "Busy"), fact(workers, "Computations")]).toEqual(["2", "2", "6.1 /s"]);
    const postgres = await service("Postgres");
    expect(fact(postgres, "Last reconcile")).toBe("3.5 s ago, 40 pending looked at");
    expect(fact(postgres, "Lost jobs queued again")).toBe("2 then, 9 in all");
    expect(fact(postgres, "Heals within")).toBe("20.0 s");
    const names = within(screen.getByRole("list", { name: /Services/ })).getAllByRole("heading", { level: 4 });
    expect(names.map((heading) => heading.textContent)).toEqual(["Router", "API", "Postgres", "Redis", "Queue", "Workers"]);
  });

  it("draws the last submissions as timelines, with the time each stage took", async () => {
    db.system = busySystem();
    renderApp("/system");
    await screen.findByText("F(30)");
    const [computed, known] = Array.from(document.querySelectorAll<HTMLElement>(".timeline"));
    expect(computed).toHaveTextContent("F(30) done, 1.2 s ago, 2.4 ms in all");
    const stage = (item: HTMLElement, name: string) => item.querySelector(`.stage[data-stage="${name}"]`)?.textContent;
    expect(stage(computed, "committed")).toBe("committed +0.8 ms after accepted");
    expect(stage(computed, "queued")).toBe("queued +0.3 ms after committed");
    expect(stage(computed, "started")).toBe("started +0.4 ms after queued");
    expect(stage(computed, "announced")).toBe("announced +0.5 ms after done");
    expect(known).toHaveTextContent("F(12) computed before, 3.0 s ago");
    expect(stage(known, "started")).toBe("started not reached");
  });

  it("says so when Redis is down, and what it can still tell", async () => {
    db.system = {
      ...idleSystem(),
      ready: { postgres: "ok", redis: "unavailable: ConnectionError" },
      ...{ api: null, queue: null, workers: null, rates: null, refused: null, recent: null },
    };
    renderApp("/system");
    const redis = await service("Redis");
    expect(within(redis).getByText("down")).toBeInTheDocument();
    expect(fact(redis, "Ready")).toBe("no (unavailable: ConnectionError)");
    expect(fact(await service("Postgres"), "Ready")).toBe("yes");
    expect(screen.getByText("Unknown while Redis is unavailable.")).toBeInTheDocument();
  });

  it("says so when the API cannot be reached", async () => {
    server.use(http.get("*/api/system", () => HttpResponse.error()));
    renderApp("/system");
    expect(await screen.findByRole("alert")).toHaveTextContent("We can't reach the API right now");
  });

  it("marks the API down when it stops answering, keeping its last answer on screen", async () => {
    db.system = busySystem();
    renderApp("/system");
    const api = await service("API");
    expect(within(api).getByText("up")).toBeInTheDocument();
    server.use(http.get("*/api/system", () => HttpResponse.error()));
    act(() => FakeEventSource.latest().emit(done(1, "1")));
    expect(await screen.findByRole("alert", {}, { timeout: 3000 })).toHaveTextContent("We can't reach the API right now");
    expect(within(await service("API")).getByText("down")).toBeInTheDocument();
    expect(fact(await service("Queue"), "Jobs waiting")).toBe("12");
  });

  it("asks again soon after an event, once for a burst of them", async () => {
    renderApp("/system");
    await service("Workers");
    const asked = db.systemAsked;
    db.system = busySystem();
    act(() => {
      for (let index = 0; index < 50; index += 1) FakeEventSource.latest().emit(done(index, "1"));
    });
    await waitFor(() => expect(fact(document.body, "Jobs waiting")).toBe("12"), { timeout: 3000 });
    expect(db.systemAsked - asked).toBe(1);
  });

  it("can be paused and resumed from the keyboard", async () => {
    const { user } = renderApp("/system");
    const pause = await screen.findByRole("button", { name: "Pause live updates" });
    pause.focus();
    await user.keyboard("{Enter}");
    expect(screen.getByRole("button", { name: "Resume live updates" })).toHaveAttribute("aria-pressed", "true");
    expect(screen.getByText("Paused.")).toBeInTheDocument();
  });
});
