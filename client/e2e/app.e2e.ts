// The whole app in a real browser, through the router, against a running stack.
// scripts/e2e.sh starts a fresh stack and runs this; E2E_BASE_URL points elsewhere.
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

const BASE = process.env.E2E_BASE_URL ?? "http://localhost:3050";
const ARTIFACTS = path.resolve(import.meta.dirname, "artifacts");
const TIMEOUT = 30_000;

let browser: Browser;
let context: BrowserContext;
let problems: string[];

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    // No sandbox as root; no background traffic to the outside.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

afterAll(async () => {
  await browser?.close();
});

/** Collect errors in the console, which include Content-Security-Policy violations. */
function watch(page: Page) {
  page.on("console", (message) => {
    // The browser logs every 4xx it fetched; the bad-input test causes some on purpose.
    const expected = /Failed to load resource: the server responded with a status of 4\d\d/;
    if (message.type() === "error" && !expected.test(message.text())) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(error.message));
}

async function openPage(url = BASE): Promise<Page> {
  context ??= await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  problems = problems ?? [];
  watch(page);
  await page.goto(url);
  return page;
}

/** The calculator page, once it follows the live event stream. */
async function openCalculator(): Promise<Page> {
  const page = await openPage();
  await page.getByText("Live: results appear").waitFor({ timeout: TIMEOUT });
  return page;
}

afterEach(async () => {
  await context?.close();
  context = undefined as unknown as BrowserContext;
  const seen = problems ?? [];
  problems = [];
  expect(seen, "errors in the browser console").toEqual([]);
});

async function submit(page: Page, index: string) {
  const input = page.getByLabel("Enter your index:");
  await input.fill(index);
  await page.getByRole("button", { name: "Submit" }).click();
}

function valueItem(page: Page, text: string | RegExp) {
  return page.getByRole("listitem").filter({ hasText: text });
}

/** F(n) by fast doubling on BigInt: an independent check of the server's digits. */
function fibonacci(n: number): bigint {
  let a = 0n;
  let b = 1n;
  for (const bit of n.toString(2)) {
    const c = a * (2n * b - a);
    const d = a * a + b * b;
    [a, b] = bit === "1" ? [d, c + d] : [c, d];
  }
  return a;
}

describe("the Fib Calculator in a browser", () => {
  it("shows F(10) = 55 without a reload", async () => {
    const page = await openCalculator();
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await submit(page, "10");
    await expect.poll(() => valueItem(page, "For index 10 I calculated 55").count(), { timeout: TIMEOUT }).toBe(1);
    await expect.poll(() => page.getByLabel("Enter your index:").inputValue()).toBe("");
    await expect.poll(() => page.locator(".seen").textContent()).toContain("10");
    // Same document all along: no reload happened.
    expect(await page.evaluate(() => (window as unknown as { marker: number }).marker)).toBe(42);
  });

  it("summarises F(1,000,000) and downloads it exactly", async () => {
    const page = await openCalculator();
    await submit(page, "1000000");
    const item = valueItem(page, "(208,988 digits)");
    await item.waitFor({ timeout: TIMEOUT });
    const expected = fibonacci(1_000_000).toString();
    expect(expected).toHaveLength(208_988);
    expect(await item.textContent()).toContain(`${expected.slice(0, 20)}…${expected.slice(-20)} (208,988 digits)`);
    expect(await item.textContent()).toMatch(/computed in [\d.]+ m?s/);

    const [download] = await Promise.all([
      page.waitForEvent("download"),
      item.getByRole("link", { name: "Download F(1000000) as a text file" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("fibonacci-1000000.txt");
    const saved = path.join(ARTIFACTS, download.suggestedFilename());
    await download.saveAs(saved);
    expect(readFileSync(saved, "utf8") === expected, "downloaded digits equal an independent computation").toBe(true);

    await page.setViewportSize({ width: 1000, height: 900 });
    await page.screenshot({ path: path.join(ARTIFACTS, "results-desktop.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(ARTIFACTS, "results-phone.png"), fullPage: true });
  });

  it("explains a bad index next to the field", async () => {
    const page = await openCalculator();
    await submit(page, "abc");
    await expect.poll(() => page.getByRole("alert").textContent()).toContain("whole number");
    expect(await page.getByLabel("Enter your index:").inputValue()).toBe("abc");

    await submit(page, "99999999"); // refused by the API itself
    await expect.poll(() => page.getByRole("alert").textContent(), { timeout: TIMEOUT }).toContain(
      "index must be at most 10,000,000",
    );
  });

  it("shows a result submitted in one page in another, live", async () => {
    const first = await openCalculator();
    const second = await context.newPage();
    watch(second);
    await second.goto(BASE);
    await second.getByText("Live: results appear").waitFor({ timeout: TIMEOUT });
    const index = String(500 + Math.floor(Math.random() * 400));
    await submit(first, index);
    await valueItem(second, new RegExp(`For index ${index} I calculated \\d+`)).waitFor({ timeout: TIMEOUT });
    const shown = await valueItem(second, `For index ${index} I calculated`).locator(".value").textContent();
    expect(shown).toBe(fibonacci(Number(index)).toString());
  });

  it("shows the system live: each service, and a submission's timeline to the end", async () => {
    // The course's old address arrives at the system page, and it survives a reload.
    const page = await openPage(`${BASE}/otherpage`);
    await page.getByRole("heading", { name: "The system, live" }).waitFor({ timeout: TIMEOUT });
    expect(new URL(page.url()).pathname).toBe("/system");
    await page.reload();
    await page.getByRole("heading", { name: "The system, live" }).waitFor({ timeout: TIMEOUT });
    await page.getByText("Live.", { exact: true }).waitFor({ timeout: TIMEOUT });
    const box = (name: string) => page.getByRole("heading", { name, level: 4, exact: true }).locator("xpath=ancestor::li[1]");
    for (const name of ["Postgres", "Redis"]) {
      expect(await box(name).locator(".service__health").textContent()).toBe("up");
    }
    await expect.poll(() => box("Workers").locator("dd").first().textContent(), { timeout: TIMEOUT }).not.toBe("0");
    // The reconcile pass runs as the API starts: the page says how soon a lost job is healed.
    const healsWithin = box("Postgres").locator("dt", { hasText: "Heals within" }).locator("xpath=following-sibling::dd[1]");
    await expect.poll(() => healsWithin.textContent(), { timeout: TIMEOUT }).toMatch(/^\d+\.\d s$/);

    // Submitted in another page: its timeline appears here, live, every stage reached.
    const calculator = await context.newPage();
    watch(calculator);
    await calculator.goto(BASE);
    await calculator.getByText("Live: results appear").waitFor({ timeout: TIMEOUT });
    const index = String(2000 + Math.floor(Math.random() * 5000));
    await submit(calculator, index);
    const item = page.locator(".timeline", { hasText: `F(${index}) done` });
    await item.waitFor({ timeout: TIMEOUT });
    for (const stage of ["accepted", "committed", "queued", "started", "done", "announced"]) {
      expect(await item.locator(`.stage[data-stage="${stage}"]`).getAttribute("data-reached")).toBe("true");
    }
    expect(await item.textContent()).toMatch(/announced \+[\d.]+ m?s after done/);

    // Keyboard: the one control is reached with Tab and works with Enter.
    const pause = page.getByRole("button", { name: "Pause live updates" });
    for (let step = 0; step < 10 && !(await pause.evaluate((button) => button === document.activeElement)); step += 1) {
      await page.keyboard.press("Tab");
    }
    await page.keyboard.press("Enter");
    expect(await page.getByRole("button", { name: "Resume live updates" }).getAttribute("aria-pressed")).toBe("true");

    // Every text at least 4.5:1 against what is behind it (WCAG AA for body text).
    const poor = await page.evaluate(lowContrastTexts, ".system-page");
    expect(poor, "texts below 4.5:1 contrast").toEqual([]);

    await page.setViewportSize({ width: 1000, height: 900 });
    await page.screenshot({ path: path.join(ARTIFACTS, "system-desktop.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth), "no sideways scroll on a phone").toBeLessThanOrEqual(390);
    // One arrow down between each two services, drawn in the gap below a box, never inside it.
    const arrows = await page.locator(".service").evaluateAll((boxes) =>
      boxes.map((box) => {
        const arrow = getComputedStyle(box, "::after");
        return arrow.content === "none" ? "none" : `${arrow.content} ${arrow.position}`;
      }),
    );
    expect(arrows).toEqual([...Array(5).fill('"↓" / "" absolute'), "none"]);
    await page.screenshot({ path: path.join(ARTIFACTS, "system-phone.png"), fullPage: true });
    console.log(`system page screenshots: ${path.join(ARTIFACTS, "system-desktop.png")}, system-phone.png`);
  });
});

/** In the page: each element under `root` with text of its own whose contrast is below 4.5:1. */
function lowContrastTexts(root: string): string[] {
  const channel = (value: number) => {
    const c = value / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const rgb = (color: string) => (color.match(/[\d.]+/g) ?? []).map(Number);
  const luminance = ([r, g, b]: number[]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (element: Element | null): number[] => {
    for (let at = element; at; at = at.parentElement) {
      const [r, g, b, a = 1] = rgb(getComputedStyle(at).backgroundColor);
      if (a > 0) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const poor: string[] = [];
  for (const element of document.querySelectorAll(`${root} *`)) {
    const ownText = Array.from(element.childNodes).some((node) => node.nodeType === 3 && node.textContent?.trim());
    if (!ownText) continue;
    const [fore, back] = [luminance(rgb(getComputedStyle(element).color)), luminance(background(element))];
    const ratio = (Math.max(fore, back) + 0.05) / (Math.min(fore, back) + 0.05);
    if (ratio < 4.5) poor.push(`${element.textContent?.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return poor;
}
