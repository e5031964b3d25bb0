"""Literal inputs shared by the backend and client service tests: the backend's answer, the
leader's pgbouncer.ini before and after the auth setup and a client, and the passwords.

The texts are written out by hand, never produced by the code under test.
"""

from domain.backend import BackendAccess, BackendCredentials, BackendEndpoints, HostPort
from domain.peer_data import content_digest

BACKEND_ID, CLIENT_ID, OTHER_ID = 2, 5, 6
BACKEND_USER = "relation_id_7"
BACKEND_PASSWORD = "Vh3kP9sLq2Zx7RwT5mNc8bJd"
AUTH_USER = "pgbouncer_auth_relation_id_7"
AUTH_PASSWORD = "Qe8rT2yU4iO6pA1sD3fG5hJk"
AUTH_LINE = f'"{AUTH_USER}" "{AUTH_PASSWORD}"\n'
CLIENT_USER = "relation_id_5"
CLIENT_PASSWORD = "Cl13nt-Pw4rd-Xq8zR2mT6vYb"
CREDENTIALS = BackendCredentials(BACKEND_USER, BACKEND_PASSWORD)
ENDPOINTS = BackendEndpoints(
    endpoints=(HostPort("10.1.1.1", 5432),),
    read_only_endpoints=(HostPort("10.1.1.2", 5432),),
    database="pgbouncer-k8s",
    version="16.4",
)
# The primary moved (a failover): the auth setup and every client's entries follow it.
MOVED = BackendEndpoints(
    endpoints=(HostPort("10.1.1.3", 5432),),
    read_only_endpoints=(HostPort("10.1.1.2", 5432),),
    database="pgbouncer-k8s",
    version="16.4",
)
ACCESS = BackendAccess(HostPort("10.1.1.1", 5432), CREDENTIALS)
MOVED_ACCESS = BackendAccess(HostPort("10.1.1.3", 5432), CREDENTIALS)
AUTH_DATABASES = ("pgbouncer-k8s", "postgres")
# What the leader remembers once the auth setup is done (relation 2, these credentials).
SETUP_DIGEST = content_digest(
    "2\nrelation_id_7\nVh3kP9sLq2Zx7RwT5mNc8bJd\n10.1.1.1:5432\npgbouncer-k8s,postgres"
)
MOVED_SETUP_DIGEST = content_digest(
    "2\nrelation_id_7\nVh3kP9sLq2Zx7RwT5mNc8bJd\n10.1.1.3:5432\npgbouncer-k8s,postgres"
)
# ... and once client relation 5 is set up for database "app" with CREATEDB.
SERVE_DIGEST = content_digest(
    "5\nisolation-1\napp\nCREATEDB\nCl13nt-Pw4rd-Xq8zR2mT6vYb\nrelation_id_7\nVh3kP9sLq2Zx7RwT5mNc8bJd\n10.1.1.1:5432"
)
MOVED_SERVE_DIGEST = content_digest(
    "5\nisolation-1\napp\nCREATEDB\nCl13nt-Pw4rd-Xq8zR2mT6vYb\nrelation_id_7\nVh3kP9sLq2Zx7RwT5mNc8bJd\n10.1.1.3:5432"
)

# The leader's pgbouncer.ini as the charm renders it (sorted): without the auth settings,
# with them, and serving client relation 5's database "app".
CFG_PLAIN = """\
[databases]
other = dbname=other host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
user = postgres
"""
CFG_AUTH = """\
[databases]
other = dbname=other host=10.1.1.1 port=5432

[pgbouncer]
auth_file = /var/lib/postgresql/pgbouncer/userlist.txt
auth_query = SELECT usename, passwd FROM pgbouncer_auth.get_auth($1)
auth_user = pgbouncer_auth_relation_id_7
listen_addr = *
listen_port = 6432
logfile = /var/lib/postgresql/pgbouncer/pgbouncer.log
pidfile = /var/lib/postgresql/pgbouncer/pgbouncer.pid
pool_mode = session
user = postgres
"""
CFG_SERVED = CFG_AUTH.replace(
    "[databases]\n",
    "[databases]\n"
    "app = auth_user=pgbouncer_auth_relation_id_7 dbname=app host=10.1.1.1 port=5432\n"
    "app_readonly = auth_user=pgbouncer_auth_relation_id_7 dbname=app host=10.1.1.2 port=5432\n",
)
CFG_SERVED_MOVED = CFG_SERVED.replace(
    "host=10.1.1.1 port=5432\napp_readonly", "host=10.1.1.3 port=5432\napp_readonly"
)
