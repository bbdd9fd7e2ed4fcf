import { useCallback, useState } from "react";
import type { Status } from "../api";
import { ApiStatusBanner } from "../components/ApiStatusBanner";
import { CalculatedValues } from "../components/CalculatedValues";
import { IndexForm } from "../components/IndexForm";
import { SeenIndexes } from "../components/SeenIndexes";
import { announcement } from "../format";
import { useLiveResults } from "../useLiveResults";

export function FibPage() {
  const [message, setMessage] = useState("");
  const onStatus = useCallback((status: Status) => {
    if (status.status !== "pending") setMessage(announcement(status));
  }, []);
  const { connected } = useLiveResults(onStatus);

  return (
    <div className="fib-page">
      <ApiStatusBanner />
      <IndexForm />
      <SeenIndexes />
      <CalculatedValues />
      <p className="live-indicator" data-connected={connected}>
        {connected ? "Live: results appear as they are calculated." : "Connecting to live updates…"}
      </p>
      <div className="visually-hidden" role="status" aria-live="polite">
        {message}
      </div>
    </div>
  );
}
