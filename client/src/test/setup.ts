import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/react";
import { afterAll, afterEach, beforeAll } from "vitest";
import { FakeEventSource } from "./fakeEventSource";
import { server } from "./server";

// jsdom has no EventSource; tests drive this stand-in instead.
globalThis.EventSource = FakeEventSource as unknown as typeof EventSource;

beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  cleanup();
  server.resetHandlers();
  FakeEventSource.reset();
});
afterAll(() => server.close());
