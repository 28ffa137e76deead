"""The start-up line carries every configuration field as JSON-friendly values."""

from __future__ import annotations

import json

from etcdpy.config import ServerConfig
from etcdpy.observability.startup import config_fields


def test_every_field_is_there_and_serializable() -> None:
    config = ServerConfig()
    fields = config_fields(config)
    assert set(fields) == set(ServerConfig.__dataclass_fields__)
    assert fields["max_txn_ops"] == 128
    assert all(isinstance(u, str) for u in fields["listen_client_urls"])
    json.dumps(fields)  # raises if anything is not plain data
