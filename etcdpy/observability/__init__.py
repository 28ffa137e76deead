"""What operators read: Prometheus metrics under etcd's names (``metrics``), logs shaped
like etcd's zap logger (``logging``), the raft request id of the request being served
(``request_ids``) and the start-up banner (``startup``).

May import: config, errors, gofmt, outbox, pb, etcdpy.
"""
