"""HTTP/1.1 on the client port (health, metrics, the JSON gateway), on h11.

``messages``: what routes see (request, responses, handler). ``connection``: the sans-IO
connection (h11 parses and keeps the state; Go's answers to refused requests are in
``go_answers``). ``protocol``: the asyncio transport around it.
"""

from etcdpy.clientport.http1.connection import MAX_HEADER_BYTES, Http1Connection
from etcdpy.clientport.http1.messages import (
    TEXT_PLAIN,
    Handler,
    HttpRequest,
    HttpResponse,
    Response,
    StreamingResponse,
    text_error,
)
from etcdpy.clientport.http1.protocol import Http1Protocol

__all__ = [
    "MAX_HEADER_BYTES",
    "TEXT_PLAIN",
    "Handler",
    "Http1Connection",
    "Http1Protocol",
    "HttpRequest",
    "HttpResponse",
    "Response",
    "StreamingResponse",
    "text_error",
]
