"""Local adapters: the workload as real pgbouncer processes on this machine (tests, demo)."""
