"""fibworker: the RQ worker that computes Fibonacci numbers for fibstack."""
