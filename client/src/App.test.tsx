import { screen, within } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { db, done, resetDb, server, status } from "./test/server";
import { renderApp } from "./test/render";

beforeEach(resetDb);

describe("the Fib Calculator page", () => {
  it("shows the course's page with what the API has seen and calculated", async () => {
    db.seen = [{ number: 10 }, { number: 7 }, { number: 10 }];
    db.recent = [done(10, "55"), done(7, "13")];
    renderApp();

    expect(screen.getByRole("heading", { name: "Fib Calculator" })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Home" })).toHaveAttribute("href", "/");
    expect(screen.getByRole("link", { name: "System" })).toHaveAttribute("href", "/system");
    expect(screen.getByLabelText("Enter your index:")).toBeInTheDocument();
    expect(await screen.findByText("10, 7, 10")).toBeInTheDocument();
    const values = screen.getByRole("list");
    expect(within(values).getAllByRole("listitem").map((item) => item.textContent)).toEqual([
      expect.stringContaining("For index 10 I calculated 55"),
      expect.stringContaining("For index 7 I calculated 13"),
    ]);
  });

  it("shows a pending index as calculating", async () => {
    db.recent = [status(40)];
    renderApp();
    const item = await screen.findByText(/For index 40: .*calculating/);
    expect(item.closest("li")).toHaveAttribute("aria-busy", "true");
  });

  it("shows a friendly message when the API is unreachable", async () => {
    server.use(
      http.get("*/api/values/all", () => HttpResponse.error()),
      http.get("*/api/values/recent", () => HttpResponse.error()),
    );
    renderApp();
    expect(await screen.findByRole("alert")).toHaveTextContent("We can't reach the server right now");
    expect(screen.getByText("Indexes I have seen:").nextSibling).toHaveTextContent("Not available right now.");
  });

  it("treats a 503 from a backing service as unreachable too", async () => {
    server.use(
      http.get("*/api/values/recent", () =>
        HttpResponse.json({ error: "The database (Postgres) is unavailable", code: "postgres_unavailable" }, { status: 503 }),
      ),
    );
    renderApp();
    expect(await screen.findByRole("alert")).toHaveTextContent("We can't reach the server right now");
  });
});

describe("routing", () => {
  it("goes to the system page and back without a reload", async () => {
    const { user } = renderApp();
    await user.click(screen.getByRole("link", { name: "System" }));
    expect(screen.getByRole("heading", { name: "The system, live" })).toBeInTheDocument();
    await user.click(screen.getByRole("link", { name: "Home" }));
    expect(screen.getByLabelText("Enter your index:")).toBeInTheDocument();
  });

  it("opens the system page from its own address, and from the course's old one", () => {
    renderApp("/otherpage");
    expect(screen.getByRole("heading", { name: "The system, live" })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "System" })).toHaveAttribute("aria-current", "page");
  });

  it("says so for an unknown address", () => {
    renderApp("/nowhere");
    expect(screen.getByRole("heading", { name: "Page not found" })).toBeInTheDocument();
  });
});
