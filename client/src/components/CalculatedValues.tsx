import { useRecentValues } from "../queries";
import { ValueItem } from "./ValueItem";

export function CalculatedValues() {
  const { data, isPending, isError } = useRecentValues();
  return (
    <section aria-labelledby="values-heading">
      <h3 id="values-heading">Calculated values:</h3>
      {isPending && <p>Loading…</p>}
      {isError && !data && <p>Not available right now.</p>}
      {data && data.length === 0 && <p>None yet.</p>}
      {data && data.length > 0 && (
        <ul className="values">
          {data.map((status) => (
            <ValueItem key={status.index} status={status} />
          ))}
        </ul>
      )}
    </section>
  );
}
