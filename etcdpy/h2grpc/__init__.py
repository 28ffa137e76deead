"""etcdpy's gRPC server: gRPC's HTTP/2 protocol written on frames, in this process's event loop.

Why not grpc.aio's server: a unary call costs it about 260 us of CPU on the benchmark machine,
and the h2 library (the HTTP/2 state machine made for Python) about 170 us; this package spends
about 32 us (`python -m bench.h2grpc_cost`), and it adopts a connection accepted elsewhere, so
gRPC and HTTP/1.1 share the client port without a relay. Header blocks are decoded by `hpack`
(the h2 project's HPACK codec); responses use only HPACK literals, so they need no encoder state.

The handlers it runs are grpc's own ``RpcMethodHandler`` objects, with a context that has the
part of grpc.aio's ``ServicerContext`` that etcdpy's services use (``h2grpc.context``).

Layers, each importing only those below it: ``server`` (handlers by path, the connections,
graceful stop) -> ``connection`` (the asyncio transport: socket, timers, tasks) -> ``calls``
(one call per stream; its connection is a ``CallSink``) and ``protocol`` (the sans-IO HTTP/2
core: bytes in, ``events`` out, frames in ``data_to_send``) -> ``limits``, ``frames``.

May import: the base.
"""
