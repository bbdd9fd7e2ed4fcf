import { screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";
import { beforeEach, describe, expect, it } from "vitest";
import { db, resetDb, server, status } from "../test/server";
import { renderApp } from "../test/render";

beforeEach(resetDb);

function recordPosts() {
  const bodies: unknown[] = [];
  server.use(
    http.post("*/api/values", async ({ request }) => {
      const body = (await request.json()) as { index: string };
      bodies.push(body);
      db.seen = [{ number: Number(body.index) }, ...db.seen];
      return HttpResponse.json({ working: true, ...status(Number(body.index)) }, { status: 202 });
    }),
  );
  return bodies;
}

describe("submitting an index", () => {
  it("sends it, clears the field and shows it pending", async () => {
    const posts = recordPosts();
    const { user } = renderApp();
    const input = screen.getByLabelText("Enter your index:");
    await user.type(input, "10");
    await user.click(screen.getByRole("button", { name: "Submit" }));

    await waitFor(() => expect(input).toHaveValue(""));
    expect(posts).toEqual([{ index: "10" }]);
    expect(await screen.findByText(/For index 10: .*calculating/)).toBeInTheDocument();
    expect(await screen.findByText("10")).toBeInTheDocument(); // "Indexes I have seen" refetched
  });

  it("submits with the Enter key", async () => {
    const posts = recordPosts();
    const { user } = renderApp();
    await user.type(screen.getByLabelText("Enter your index:"), "7{Enter}");
    await waitFor(() => expect(posts).toEqual([{ index: "7" }]));
  });

  it("refuses what is not a whole number before sending anything", async () => {
    const posts = recordPosts();
    const { user } = renderApp();
    const input = screen.getByLabelText("Enter your index:");
    await user.type(input, "abc");
    await user.click(screen.getByRole("button", { name: "Submit" }));

    const error = screen.getByRole("alert");
    expect(error).toHaveTextContent("The index must be a whole number");
    expect(input).toHaveAttribute("aria-invalid", "true");
    expect(input).toHaveAccessibleDescription(/whole number/);
    expect(input).toHaveValue("abc");
    expect(posts).toEqual([]);
  });

  it("asks for an index when the field is empty", async () => {
    const { user } = renderApp();
    await user.click(screen.getByRole("button", { name: "Submit" }));
    expect(screen.getByRole("alert")).toHaveTextContent("Enter an index");
  });

  it("shows the API's own message next to the field and keeps the input", async () => {
    server.use(
      http.post("*/api/values", () =>
        HttpResponse.json({ error: "index must be at most 10,000,000", code: "index_too_large" }, { status: 422 }),
      ),
    );
    const { user } = renderApp();
    const input = screen.getByLabelText("Enter your index:");
    await user.type(input, "99999999");
    await user.click(screen.getByRole("button", { name: "Submit" }));

    expect(await screen.findByRole("alert")).toHaveTextContent("index must be at most 10,000,000");
    expect(input).toHaveAccessibleDescription("index must be at most 10,000,000");
    expect(input).toHaveValue("99999999");
  });

  it("says when the server cannot take the submission", async () => {
    server.use(http.post("*/api/values", () => HttpResponse.error()));
    const { user } = renderApp();
    await user.type(screen.getByLabelText("Enter your index:"), "5{Enter}");
    expect(await screen.findByText(/can't be reached right now. Please try again/)).toBeInTheDocument();
    expect(screen.getByLabelText("Enter your index:")).toHaveValue("5");
  });

  it("clears the error once a submission succeeds", async () => {
    recordPosts();
    const { user } = renderApp();
    const input = screen.getByLabelText("Enter your index:");
    await user.type(input, "x{Enter}");
    expect(screen.getByRole("alert")).toBeInTheDocument();
    await user.clear(input);
    await user.type(input, "3{Enter}");
    await waitFor(() => expect(screen.queryByRole("alert")).not.toBeInTheDocument());
    expect(input).not.toHaveAttribute("aria-invalid", "true");
  });
});
