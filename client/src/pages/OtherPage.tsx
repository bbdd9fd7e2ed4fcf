import { Link } from "react-router";

export function OtherPage() {
  return (
    <div>
      <h2>I'm some other page</h2>
      <p>
        This page exists to show client-side routing: its address works when reloaded or shared.{" "}
        <Link to="/">Go back home</Link>
      </p>
    </div>
  );
}
