import { screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import type { Status } from "../api";
import { db, done, resetDb, server, status } from "../test/server";
import { renderApp } from "../test/render";

beforeEach(resetDb);

// F(1,000,000): 208,988 digits. Built as a string: never a JavaScript number.
const HEAD = "19532821287077577316";
const TAIL = "68996526838242546875";
const MILLION = HEAD + "0".repeat(208_988 - 40) + TAIL;
const longStatus: Status = status(1_000_000, {
  status: "done",
  digits: 208_988,
  head: HEAD,
  tail: TAIL,
  value: null,
  compute_ms: 13.25,
});

describe("a calculated value", () => {
  it("shows a long value as head…tail with its digit count and compute time", async () => {
    db.recent = [longStatus];
    renderApp();
    const item = (await screen.findByText(/For index 1000000 I calculated/)).closest("li")!;
    expect(item).toHaveTextContent(`${HEAD}…${TAIL} (208,988 digits)`);
    expect(item).toHaveTextContent("computed in 13.3 ms");
    expect(item.textContent!.length).toBeLessThan(300);
  });

  it("keeps a value beyond 2^53 exact", async () => {
    const f79 = "14472334024676221"; // F(79) > Number.MAX_SAFE_INTEGER
    expect(String(Number(f79))).not.toBe(f79); // as a JavaScript number it would be rounded
    db.recent = [done(79, f79)];
    renderApp();
    expect(await screen.findByText(f79)).toBeInTheDocument();
  });

  it("copies the full long value, fetched from the API", async () => {
    db.recent = [longStatus];
    server.use(http.get("*/api/values/1000000/decimal", () => HttpResponse.text(MILLION)));
    const { user } = renderApp();
    await user.click(await screen.findByRole("button", { name: "Copy F(1000000)" }));
    expect(await screen.findByRole("button", { name: "Copied F(1000000)" })).toBeInTheDocument();
    expect(await navigator.clipboard.readText()).toBe(MILLION);
  });

  it("copies a short value without asking the API", async () => {
    db.recent = [done(10, "55")];
    const { user } = renderApp();
    await user.click(await screen.findByRole("button", { name: "Copy F(10)" }));
    await waitFor(async () => expect(await navigator.clipboard.readText()).toBe("55"));
  });

  it("offers the full value as a text file download", async () => {
    db.recent = [longStatus];
    renderApp();
    const link = await screen.findByRole("link", { name: "Download F(1000000) as a text file" });
    expect(link).toHaveAttribute("href", "/api/values/1000000/decimal");
    expect(link).toHaveAttribute("download", "fibonacci-1000000.txt");
  });

  it("says when copying fails", async () => {
    db.recent = [longStatus];
    server.use(http.get("*/api/values/1000000/decimal", () => HttpResponse.error()));
    const { user } = renderApp();
    await user.click(await screen.findByRole("button", { name: "Copy F(1000000)" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Copy failed; use Download instead.");
  });
});
