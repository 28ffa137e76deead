"""The API server's continue token (k8s.io/apiserver/pkg/storage/continue.go): base64 RawURL of
``{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the prefix>"}``. A decoded start key
must be clean (path.Clean leaves it unchanged), so a token cannot reach above the list's prefix.
``rv`` -1 is the token of an "inconsistent continue": the rest of the list at the latest revision,
given with the 410 of a compacted continue.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath

from etcdpy.k8s import errors

VERSION = "meta.k8s.io/v1"
INVALID = "continue key is not valid"


class ContinueError(ValueError):
    """A token that does not decode; the message is the API server's."""


def encode(key: bytes, key_prefix: bytes, revision: int) -> str:
    if not key.startswith(key_prefix):
        raise errors.InternalError(
            "unable to encode next field: the key and key prefix do not match "
            f"{key_prefix.decode(errors='replace')} {key.decode(errors='replace')}"
        )
    start = key[len(key_prefix) :].decode("utf-8", errors="surrogateescape")
    body = json.dumps({"v": VERSION, "rv": revision, "start": start}, separators=(",", ":"))
    return (
        base64.urlsafe_b64encode(body.encode("utf-8", errors="surrogateescape"))
        .decode()
        .rstrip("=")
    )


def _clean(key: str) -> str:
    """Go's path.Clean (posixpath.normpath keeps a leading "//", Go does not)."""
    cleaned = posixpath.normpath(key)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def decode(token: str, key_prefix: bytes) -> tuple[bytes, int]:
    """(the key to start from, the revision); ContinueError with the API server's message."""
    if "=" in token or any(c in token for c in "+/"):
        raise ContinueError(f"{INVALID}: illegal base64 data")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise ContinueError(f"{INVALID}: {err}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise ContinueError(f"{INVALID}: {err}") from None
    if not isinstance(data, dict):
        raise ContinueError(f"{INVALID}: not an object")
    version = data.get("v", "")
    if version != VERSION:
        raise ContinueError(f"{INVALID}: server does not recognize this encoded version {version}")
    rv = data.get("rv", 0)
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise ContinueError(
            f"{INVALID}: incorrect encoded start resourceVersion (version {VERSION})"
        )
    start = data.get("start", "")
    if not isinstance(start, str) or not start:
        raise ContinueError(f"{INVALID}: encoded start key empty (version {VERSION})")
    key = start if start.startswith("/") else "/" + start
    cleaned = _clean(key)
    if cleaned != key:
        raise ContinueError(f"{INVALID}: {start}")
    return key_prefix + cleaned[1:].encode(), rv


def bad_request(err: ContinueError) -> errors.BadRequest:
    return errors.BadRequest(f"invalid continue token: {err}")
