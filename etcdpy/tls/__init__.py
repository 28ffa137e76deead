"""TLS as etcd 3.4 sets it up (``pkg/transport``, ``pkg/tlsutil``), shared by the peer side
(``etcdpy.peer.tls``) and the client side (``etcdpy.clientport.tls``, the front-end
processes): the settings (``info.TLSInfo``) and the ``ssl`` contexts built from them, the
checks etcd makes after a handshake (``checks``: allowed CN or host name, SANs, CRL), Go's
cipher suite names (``ciphers``), the certificate made by ``--auto-tls``/``--peer-auto-tls``
(``self_cert``), the server context that re-reads its files when they change (``reload``), and
the gRPC channel credentials of etcdpy's own clients (``grpc_credentials``).

It sits in the base because two layers that may not import each other need it (peer, below the
member, and the client port with the front-ends, above it) and h2grpc reads a connection's
client certificate name through it.

May import: config and the etcdpy package.
"""
