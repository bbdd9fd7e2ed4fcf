import { useSeenIndexes } from "../queries";

export function SeenIndexes() {
  const { data, isPending, isError } = useSeenIndexes();
  let body: string;
  if (isPending) body = "Loading…";
  else if (isError) body = "Not available right now.";
  else if (data.length === 0) body = "None yet.";
  else body = data.map(({ number }) => number).join(", ");
  return (
    <section aria-labelledby="seen-heading">
      <h3 id="seen-heading">Indexes I have seen:</h3>
      <p className="seen">{body}</p>
    </section>
  );
}
