import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useId, useState, type FormEvent } from "react";
import { api, ApiError, type Status } from "../api";
import { keys, placeFirst } from "../queries";

const DIGITS = /^\s*\d+\s*$/;

export function IndexForm() {
  const [index, setIndex] = useState("");
  const [error, setError] = useState<string | null>(null);
  const queryClient = useQueryClient();
  const inputId = useId();
  const errorId = useId();

  const submit = useMutation({
    mutationFn: api.submit,
    onSuccess: (status: Status) => {
      setIndex("");
      setError(null);
      queryClient.setQueryData<Status[]>(keys.recent, (list) => placeFirst(list, status));
      void queryClient.invalidateQueries({ queryKey: keys.seen });
    },
    onError: (err: Error) => {
      // Keep what was typed so it can be corrected.
      setError(err instanceof ApiError ? err.message : `${err.message} Please try again in a moment.`);
    },
  });

  const onSubmit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    if (!DIGITS.test(index)) {
      setError(index.trim() === "" ? "Enter an index, like 10." : "The index must be a whole number, like 10.");
      return;
    }
    setError(null);
    submit.mutate(index.trim());
  };

  return (
    <form className="index-form" onSubmit={onSubmit} noValidate>
      <label htmlFor={inputId}>Enter your index:</label>
      <div className="index-form__row">
        <input
          id={inputId}
          name="index"
          inputMode="numeric"
          autoComplete="off"
          value={index}
          onChange={(event) => setIndex(event.target.value)}
          aria-invalid={error !== null}
          aria-describedby={error ? errorId : undefined}
        />
        <button type="submit" disabled={submit.isPending}>
          {submit.isPending ? "Submitting…" : "Submit"}
        </button>
      </div>
      {error && (
        <p id={errorId} className="index-form__error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
