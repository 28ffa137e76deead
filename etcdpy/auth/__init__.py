"""etcd's auth: users, roles and their key permissions (kept through the log, on the backend),
the tokens that name a caller (simple and JWT), and the checks every request meets when auth is
on (etcd's auth package). ``AuthChecker`` (etcdpy.auth.info) is what the enforcement sites (the
pipeline's Auth interceptor, the applier, the watch service) ask.

May import: mvcc, raft, h2grpc, bbolt and the base.
"""
