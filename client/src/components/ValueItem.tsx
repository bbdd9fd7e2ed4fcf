import { useState } from "react";
import { api, decimalUrl, type Status } from "../api";
import { formatDigits, formatMs } from "../format";

function LongValue({ status }: { status: Status }) {
  return (
    <span className="value value--long">
      <span className="value__digits" aria-label={`${status.head} to ${status.tail}`}>
        {status.head}…{status.tail}
      </span>{" "}
      <span className="value__count">({formatDigits(status.digits ?? 0)} digits)</span>
    </span>
  );
}

function Actions({ status }: { status: Status }) {
  const [copied, setCopied] = useState<"idle" | "copying" | "copied" | "failed">("idle");
  const copy = async () => {
    setCopied("copying");
    try {
      const text = status.value ?? (await api.decimal(status.index));
      await navigator.clipboard.writeText(text);
      setCopied("copied");
    } catch {
      setCopied("failed");
    }
  };
  return (
    <span className="value__actions">
      <button
        type="button"
        onClick={() => void copy()}
        disabled={copied === "copying"}
        aria-label={`${copied === "copied" ? "Copied" : "Copy"} F(${status.index})`}
      >
        {copied === "copied" ? "Copied" : "Copy"}
      </button>
      <a
        href={decimalUrl(status.index)}
        download={`fibonacci-${status.index}.txt`}
        aria-label={`Download F(${status.index}) as a text file`}
      >
        Download
      </a>
      {copied === "failed" && <span role="alert">Copy failed; use Download instead.</span>}
    </span>
  );
}

export function ValueItem({ status }: { status: Status }) {
  if (status.status === "pending") {
    return (
      <li className="value-item value-item--pending" aria-busy="true">
        For index {status.index}: <span className="spinner" aria-hidden="true" /> calculating…
      </li>
    );
  }
  if (status.status === "failed") {
    return (
      <li className="value-item value-item--failed">
        For index {status.index} the calculation failed: {status.error ?? "unknown error"}. Submit it again to retry.
      </li>
    );
  }
  return (
    <li className="value-item">
      <span>
        For index {status.index} I calculated{" "}
        {status.value !== null ? <span className="value">{status.value}</span> : <LongValue status={status} />}
      </span>
      {status.compute_ms !== null && (
        <span className="value__time">computed in {formatMs(status.compute_ms)}</span>
      )}
      <Actions status={status} />
    </li>
  );
}
