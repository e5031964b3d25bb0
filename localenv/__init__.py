"""Real local processes for the integration tests and the demo (not charm code).

``PostgresCluster`` starts a throwaway PostgreSQL server; ``net`` finds free ports and waits for
listeners; ``binaries`` locates Debian's PostgreSQL programs. The pgbouncer processes themselves
are run by ``local_workload.LocalWorkload``, the workload port on this machine.
"""
