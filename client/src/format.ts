import type { Status } from "./api";

export function formatDigits(digits: number): string {
  return digits.toLocaleString("en-US");
}

export function formatMs(ms: number): string {
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** What a screen reader hears when a result arrives. */
export function announcement(status: Status): string {
  if (status.status === "failed") return `Index ${status.index} failed: ${status.error ?? "unknown error"}`;
  if (status.status === "pending") return `Calculating index ${status.index}`;
  if (status.value !== null) return `For index ${status.index} I calculated ${status.value}`;
  return `For index ${status.index} I calculated a number with ${formatDigits(status.digits ?? 0)} digits`;
}
