"""Auth set-up once the cluster is healthy: user root, role root, auth enable (etcd's own
order), each step tolerating what another pod already did."""

from __future__ import annotations

from typing import Any

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.statefulset.client import ClientError, Security, first_answering
from etcdpy.statefulset.pod import Pod
from etcdpy.statefulset.retry import NotYet

ALREADY = ("already exists", "already granted")


def _tolerant(member: Any, method: Any, request: Any) -> None:
    try:
        member.call(method, request)
    except ClientError as err:
        if not any(word in str(err) for word in ALREADY):
            raise


def ensure_auth(pod: Pod, root_password: str, log: Any) -> None:
    """Returns once auth is enabled with root; NotYet while the cluster cannot do it."""
    plain = Security(pod.member_security.cacert, pod.member_security.cert, pod.member_security.key)
    urls = [pod.client_url, *pod.other_client_urls()]
    try:
        with first_answering(urls, plain, pod.dial_timeout, pod.timeout) as member:
            try:
                if member.login("root", root_password):
                    log.info("auth is enabled with the root user")
                    return
            except ClientError as err:
                log.warning("auth is enabled but root's password differs from the chart's; "
                            "leaving it alone", error=str(err))  # fmt: skip
                return
            # A linearizable read first: the cluster has a leader and this member is a voter.
            member.call(member.kv.Range, pb.RangeRequest(key=b"health"))
            _tolerant(member, member.auth.UserAdd,
                      pb.AuthUserAddRequest(name="root", password=root_password))  # fmt: skip
            _tolerant(member, member.auth.RoleAdd, pb.AuthRoleAddRequest(name="root"))
            _tolerant(member, member.auth.UserGrantRole,
                      pb.AuthUserGrantRoleRequest(user="root", role="root"))  # fmt: skip
            member.call(member.auth.AuthEnable, pb.AuthEnableRequest())
            log.info("auth enabled with the root user")
    except ClientError as err:
        raise NotYet(str(err)) from None
