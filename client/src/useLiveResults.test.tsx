import { act, screen, waitFor, within } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeEventSource } from "./test/fakeEventSource";
import { db, done, resetDb, server, status } from "./test/server";
import { renderApp } from "./test/render";

beforeEach(resetDb);
afterEach(() => vi.useRealTimers());

/** An entry of "Calculated values" (the live region repeats the same words). */
const findItem = async (text: RegExp) => within(await screen.findByRole("list")).findByText(text);

describe("live results", () => {
  it("listens to the API's event stream", async () => {
    renderApp();
    await screen.findByText("None yet.", { selector: ".seen" });
    expect(FakeEventSource.latest().url).toBe("/api/events");
    act(() => FakeEventSource.latest().open());
    expect(screen.getByText(/Live: results appear/)).toBeInTheDocument();
  });

  it("turns pending into done when the worker's event arrives, and announces it", async () => {
    db.recent = [status(10)];
    renderApp();
    await screen.findByText(/For index 10: .*calculating/);

    act(() => FakeEventSource.latest().emit(done(10, "55", 0.042)));

    expect(await findItem(/For index 10 I calculated/)).toHaveTextContent("For index 10 I calculated 55");
    expect(screen.getByText("computed in 0.042 ms")).toBeInTheDocument();
    expect(screen.queryByText(/calculating/)).not.toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent("For index 10 I calculated 55");
  });

  it("adds indexes submitted in another tab, newest first", async () => {
    db.recent = [done(7, "13")];
    renderApp();
    await screen.findByText(/For index 7 I calculated/);
    db.seen = [{ number: 12 }, { number: 7 }];

    act(() => FakeEventSource.latest().emit(status(12)));

    await waitFor(() =>
      expect(screen.getAllByRole("listitem").map((item) => item.textContent)).toEqual([
        expect.stringContaining("For index 12: "),
        expect.stringContaining("For index 7 I calculated 13"),
      ]),
    );
    expect(await screen.findByText("12, 7")).toBeInTheDocument(); // "Indexes I have seen" refetched
  });

  it("keeps a result that arrives before the response to its own submission", async () => {
    // The worker can finish before the API's answer to the POST reaches the
    // page; that answer (pending) must not overwrite the newer "done".
    let answer: () => void = () => {};
    const answered = new Promise<void>((resolve) => (answer = resolve));
    server.use(
      http.post("*/api/values", async () => {
        await answered;
        return HttpResponse.json({ working: true, ...status(10) }, { status: 202 });
      }),
    );
    const { user } = renderApp();
    await screen.findByText("None yet.", { selector: ".seen" });
    await user.type(screen.getByLabelText("Enter your index:"), "10{Enter}");
    act(() => FakeEventSource.latest().emit(status(10)));
    act(() => FakeEventSource.latest().emit(done(10, "55")));
    answer();
    await waitFor(() => expect(screen.getByLabelText("Enter your index:")).toHaveValue(""));
    expect(await findItem(/For index 10/)).toHaveTextContent("For index 10 I calculated 55");
  });

  it("keeps a result that arrives while the list is still loading", async () => {
    // A page opened just before another tab submits: its list request was
    // answered from the state before the submission, and reaches the page
    // after the events; that older answer must not hide them.
    let arrived: () => void = () => {};
    const requested = new Promise<void>((resolve) => (arrived = resolve));
    let answer: () => void = () => {};
    const answered = new Promise<void>((resolve) => (answer = resolve));
    db.recent = [done(7, "13")];
    server.use(
      http.get(
        "*/api/values/recent",
        async () => {
          const snapshot = [...db.recent]; // the state when the request arrives, as the API reads it
          arrived();
          await answered;
          return HttpResponse.json(snapshot);
        },
        { once: true },
      ),
    );
    renderApp();
    await requested;
    act(() => FakeEventSource.latest().open());
    db.recent = [done(12, "144"), done(7, "13")]; // what any later request sees
    act(() => FakeEventSource.latest().emit(status(12)));
    act(() => FakeEventSource.latest().emit(done(12, "144")));
    answer();
    await screen.findByText(/For index 7 I calculated/);
    expect(await findItem(/For index 12/)).toHaveTextContent("For index 12 I calculated 144");
  });

  it("shows a failure from the worker", async () => {
    db.recent = [status(9)];
    renderApp();
    await screen.findByText(/For index 9: /);
    act(() => FakeEventSource.latest().emit(status(9, { status: "failed", error: "MemoryError: out of memory" })));
    expect(await screen.findByText(/the calculation failed: MemoryError: out of memory/)).toBeInTheDocument();
  });

  it("reconnects by itself after the server drops the stream, and catches up", async () => {
    db.recent = [status(11)];
    renderApp();
    await screen.findByText(/For index 11: /);
    act(() => FakeEventSource.latest().open());
    vi.useFakeTimers({ shouldAdvanceTime: true });

    // The API restarted: the router answered the stream with an error.
    act(() => FakeEventSource.latest().fail());
    expect(screen.getByText(/Connecting to live updates/)).toBeInTheDocument();
    db.recent = [done(11, "89")]; // computed while we were away
    act(() => vi.advanceTimersByTime(1000));
    expect(FakeEventSource.instances).toHaveLength(2);

    act(() => FakeEventSource.latest().open());
    expect(await findItem(/For index 11 I calculated/)).toHaveTextContent("For index 11 I calculated 89");
  });

  it("backs off between failed reconnects", async () => {
    renderApp();
    await screen.findByText("None yet.", { selector: ".seen" });
    vi.useFakeTimers({ shouldAdvanceTime: false });
    act(() => FakeEventSource.latest().fail());
    act(() => vi.advanceTimersByTime(1000));
    act(() => FakeEventSource.latest().fail());
    act(() => vi.advanceTimersByTime(1000));
    expect(FakeEventSource.instances).toHaveLength(2); // the second wait is 2 s
    act(() => vi.advanceTimersByTime(1000));
    expect(FakeEventSource.instances).toHaveLength(3);
  });

  it("closes the stream when the page goes away", async () => {
    const { unmount } = renderApp();
    await screen.findByText("None yet.", { selector: ".seen" });
    const source = FakeEventSource.latest();
    unmount();
    expect(source.readyState).toBe(FakeEventSource.CLOSED);
  });

  it("keeps the lists when the API is briefly down", async () => {
    db.recent = [done(3, "2")];
    renderApp();
    await screen.findByText(/For index 3 I calculated/);
    server.use(http.get("*/api/values/recent", () => HttpResponse.error()));
    act(() => FakeEventSource.latest().emit(done(4, "3")));
    expect(await findItem(/For index 4 I calculated/)).toHaveTextContent("For index 4 I calculated 3");
    expect(await findItem(/For index 3 I calculated/)).toHaveTextContent("For index 3 I calculated 2");
  });
});
