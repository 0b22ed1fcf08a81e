"""Doc tests: the examples in docs/ run against a live local cluster."""
