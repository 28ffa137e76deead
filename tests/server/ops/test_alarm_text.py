"""Alarms as etcd 3.4 writes them into StatusResponse.errors (etcdctl's ERRORS column)."""

from __future__ import annotations

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.ops.alarms import alarm_text


def test_alarm_text_is_gogoprotos_compact_text() -> None:
    # As a real etcd 3.4.23 answered endpoint status with a NOSPACE alarm raised.
    nospace = pb.AlarmMember(memberID=13668033151171901709, alarm=pb.NOSPACE)
    assert alarm_text(nospace) == "memberID:13668033151171901709 alarm:NOSPACE "


def test_alarm_text_leaves_out_zero_fields() -> None:
    # The corruption checker raises CORRUPT for member 0: proto3 text omits the zero id.
    assert alarm_text(pb.AlarmMember(memberID=0, alarm=pb.CORRUPT)) == "alarm:CORRUPT "
