"""Tasks with concurrency and rate limits: an app of their own, left out of the benchmarks,
whose processes then claim without the limits' part (registry.has_limits())."""
