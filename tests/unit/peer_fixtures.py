"""Literal inputs shared by the domain tests: two hostnames, configs and auth files.

The texts are written out by hand, never produced by the code under test.
"""

HOST0 = "pgbouncer-k8s-0.pgbouncer-k8s-endpoints.test.svc.cluster.local"
HOST1 = "pgbouncer-k8s-1.pgbouncer-k8s-endpoints.test.svc.cluster.local"
HOST2 = "pgbouncer-k8s-2.pgbouncer-k8s-endpoints.test.svc.cluster.local"

_CFG = """\
[databases]
app = host=10.1.1.1 port=5432 dbname=app auth_user=pgbouncer_auth_relation_id_3

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
listen_addr = *
listen_port = {port}
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = {mode}
user = postgres
"""

CFG_A = _CFG.format(port=6432, mode="session")
# Differs from CFG_A only in a setting pgbouncer applies on reload.
CFG_B = _CFG.format(port=6432, mode="transaction")
# Differs from CFG_A in a setting pgbouncer only applies on restart.
CFG_PORT = _CFG.format(port=7432, mode="session")
# Uses auth_query through an auth user, as the backend relation sets it up.
CFG_AUTH_USER = CFG_A.replace(
    "auth_file = /var/lib/postgresql/pgbouncer/userlist.txt\n",
    "auth_file = /var/lib/postgresql/pgbouncer/userlist.txt\n"
    "auth_user = pgbouncer_auth_relation_id_3\n",
)
# A listen_port pgbouncer cannot bind: must never reach a container.
CFG_BAD = _CFG.format(port=70000, mode="session")

AUTH_A = '"pgbouncer_auth_relation_id_3" "md5aad46d9afbcc8c8248d254d567b577c1"\n'
AUTH_B = (
    '"pgbouncer_auth_relation_id_3" "md5aad46d9afbcc8c8248d254d567b577c1"\n'
    '"relation_id_4" "Z4OtFCe6r5HG6mk1XuR6LkwZ"\n'
)
# The second field never closes its quote.
AUTH_BAD = '"pgbouncer_auth_relation_id_3" "md5aad46d9afbcc8c8248d\n'
