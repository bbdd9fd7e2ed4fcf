import { ApiUnavailableError } from "../api";
import { useRecentValues, useSeenIndexes } from "../queries";

/** A friendly notice while the API cannot be reached; it clears by itself. */
export function ApiStatusBanner() {
  const seen = useSeenIndexes();
  const recent = useRecentValues();
  const down = [seen.error, recent.error].some((error) => error instanceof ApiUnavailableError);
  if (!down) return null;
  return (
    <div className="banner" role="alert">
      We can't reach the server right now. Your results are safe, and this page updates by itself when it's back.
    </div>
  );
}
