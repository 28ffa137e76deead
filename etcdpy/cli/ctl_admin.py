"""etcdpyctl's cluster and maintenance commands: lease, member, endpoint, defrag, alarm and
snapshot. ctl.py adds them to the root group; the work is done in ctl_lease and ctl_ops.
"""

from __future__ import annotations

from pathlib import Path

import click

from etcdpy.cli import ctl_lease, ctl_ops
from etcdpy.cli.ctl_click import CtlCommand, CtlGroup, Int64, globals_of, hex_arg, run_with
from etcdpy.cli.ctl_client import EXIT_BAD_ARGS, CtlError
from etcdpy.cli.ctl_parse import parse_go_int

__all__ = ["ADMIN_COMMANDS"]


# -- leases -----------------------------------------------------------------------------------


@click.group(cls=CtlGroup, short_help="Lease related commands.")
def lease() -> None:
    """Lease related commands: grant, revoke, timetolive, list, keep-alive."""


@lease.command(cls=CtlCommand, args_error="lease grant command needs TTL argument",
               short_help="Creates a lease.")  # fmt: skip
@click.argument("ttl")
@click.pass_context
def grant(ctx: click.Context, ttl: str) -> None:
    """Creates a lease of TTL seconds; prints its ID (hex)."""
    try:
        seconds = parse_go_int(ttl)
    except ValueError as err:
        raise CtlError(f"bad TTL ({err})", EXIT_BAD_ARGS) from None
    run_with(ctx, lambda client, out: ctl_lease.lease_grant(client, out, seconds))


@lease.command(cls=CtlCommand, args_error="lease revoke command needs 1 argument",
               short_help="Revokes a lease.")  # fmt: skip
@click.argument("lease_id", metavar="LEASE_ID")
@click.pass_context
def revoke(ctx: click.Context, lease_id: str) -> None:
    """Revokes the lease LEASE_ID (hex); the keys attached to it are deleted."""
    ident = hex_arg(lease_id, "lease ID")
    run_with(ctx, lambda client, out: ctl_lease.lease_revoke(client, out, ident))


@lease.command(cls=CtlCommand, args_error="lease timetolive command needs lease ID as argument",
               short_help="Gets lease information.")  # fmt: skip
@click.argument("lease_id", metavar="LEASE_ID")
@click.option("--keys", is_flag=True, help="Get the keys attached to this lease.")
@click.pass_context
def timetolive(ctx: click.Context, lease_id: str, keys: bool) -> None:
    """Prints the granted and remaining TTL of LEASE_ID (hex)."""
    ident = hex_arg(lease_id, "lease ID")
    run_with(ctx, lambda client, out: ctl_lease.lease_timetolive(client, out, ident, keys=keys))


@lease.command("list", cls=CtlCommand, short_help="Lists all active leases.")
@click.pass_context
def lease_list(ctx: click.Context) -> None:
    """Lists the IDs of all active leases."""
    run_with(ctx, ctl_lease.lease_list)


@lease.command("keep-alive", cls=CtlCommand,
               args_error="lease keep-alive command needs lease ID as argument",
               short_help="Keeps a lease alive (renews it).")  # fmt: skip
@click.argument("lease_id", metavar="LEASE_ID")
@click.option("--once", is_flag=True, help="Renew the lease once and exit.")
@click.pass_context
def keep_alive(ctx: click.Context, lease_id: str, once: bool) -> None:
    """Renews LEASE_ID (hex) every TTL/3 seconds until it expires, is revoked, or Ctrl-C."""
    ident = hex_arg(lease_id, "lease ID")
    run_with(ctx, lambda client, out: ctl_lease.lease_keep_alive(client, out, ident, once=once))


# -- members ----------------------------------------------------------------------------------


def _member_id(text: str) -> int:
    return hex_arg(text, "member ID", signed=False)


def _urls(text: str) -> list[str]:
    return [u for u in text.split(",") if u] if text else []


@click.group(cls=CtlGroup, short_help="Membership related commands.")
def member() -> None:
    """Membership related commands: list, add, remove, update, promote."""


@member.command("list", cls=CtlCommand, short_help="Lists all members in the cluster.")
@click.pass_context
def member_list(ctx: click.Context) -> None:
    """Lists the members. The simple format writes one comma-separated line per member:
    ID, status, name, peer addrs, client addrs, is learner."""
    run_with(ctx, ctl_ops.member_list)


@member.command("add", cls=CtlCommand, args_error="member name not provided",
                short_help="Adds a member into the cluster.",
                context_settings={"allow_extra_args": True})  # fmt: skip
@click.argument("name")
@click.option("--peer-urls", default="", help="Comma-separated peer URLs of the new member.")
@click.option("--learner", is_flag=True, help="Add the member as a raft learner.")
@click.pass_context
def member_add(ctx: click.Context, name: str, peer_urls: str, learner: bool) -> None:
    """Adds the member NAME; prints the ETCD_* settings it must start with."""
    extra = ctx.args
    if extra:
        text = "too many arguments"
        for arg in (name, *extra):
            if arg.lower().startswith("http"):
                text += f", did you mean --peer-urls={arg}"
        raise CtlError(text, EXIT_BAD_ARGS)
    urls = _urls(peer_urls)
    run_with(ctx, lambda c, out: ctl_ops.member_add(c, out, name, urls, learner=learner))


@member.command("remove", cls=CtlCommand, args_error="member ID is not provided",
                short_help="Removes a member from the cluster.")  # fmt: skip
@click.argument("member_id", metavar="MEMBER_ID")
@click.pass_context
def member_remove(ctx: click.Context, member_id: str) -> None:
    """Removes the member MEMBER_ID (hex, as `member list` prints it)."""
    ident = _member_id(member_id)
    run_with(ctx, lambda client, out: ctl_ops.member_remove(client, out, ident))


@member.command("update", cls=CtlCommand, args_error="member ID is not provided",
                short_help="Updates a member's peer URLs.")  # fmt: skip
@click.argument("member_id", metavar="MEMBER_ID")
@click.option("--peer-urls", default="", help="Comma-separated peer URLs of the member.")
@click.pass_context
def member_update(ctx: click.Context, member_id: str, peer_urls: str) -> None:
    """Sets the peer URLs of the member MEMBER_ID (hex)."""
    ident = _member_id(member_id)
    urls = _urls(peer_urls)
    run_with(ctx, lambda client, out: ctl_ops.member_update(client, out, ident, urls))


@member.command("promote", cls=CtlCommand, args_error="member ID is not provided",
                short_help="Promotes a learner to a voting member.")  # fmt: skip
@click.argument("member_id", metavar="MEMBER_ID")
@click.pass_context
def member_promote(ctx: click.Context, member_id: str) -> None:
    """Promotes the learner MEMBER_ID (hex) to a voting member."""
    ident = _member_id(member_id)
    run_with(ctx, lambda client, out: ctl_ops.member_promote(client, out, ident))


# -- endpoints, defrag, alarms ----------------------------------------------------------------

_CLUSTER_HELP = "Use every member's client URLs (from the member list) as the endpoints."


def _endpoints(ctx: click.Context, cluster: bool) -> list[str]:
    settings = globals_of(ctx)
    if not (cluster or ctx.meta.get("etcdpyctl.cluster")):
        return settings.endpoints
    client = settings.client()
    try:
        return ctl_ops.cluster_endpoints(client)
    finally:
        client.close()


def _remember_cluster(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta["etcdpyctl.cluster"] = True
    return value


@click.group(cls=CtlGroup, short_help="Endpoint related commands.")
@click.option("--cluster", is_flag=True, expose_value=False, callback=_remember_cluster,
              help=_CLUSTER_HELP)  # fmt: skip
def endpoint() -> None:
    """Endpoint related commands: status, health, hashkv (of each endpoint)."""


@endpoint.command("status", cls=CtlCommand, short_help="Prints the status of each endpoint.")
@click.option("--cluster", is_flag=True, help=_CLUSTER_HELP)
@click.pass_context
def endpoint_status(ctx: click.Context, cluster: bool) -> None:
    """Prints the status of each endpoint. The simple format writes one comma-separated line
    per endpoint: endpoint, ID, version, db size, is leader, is learner, raft term, raft
    index, raft applied index, errors."""
    eps = _endpoints(ctx, cluster)
    run_with(ctx, lambda client, out: ctl_ops.endpoint_status(client, out, eps))


@endpoint.command("health", cls=CtlCommand, short_help="Checks the health of each endpoint.")
@click.option("--cluster", is_flag=True, help=_CLUSTER_HELP)
@click.pass_context
def endpoint_health(ctx: click.Context, cluster: bool) -> None:
    """Checks that each endpoint answers a linearizable read (as etcdctl, the simple format
    writes its lines on stderr; the exit code says whether all are healthy)."""
    eps = _endpoints(ctx, cluster)
    run_with(ctx, lambda client, out: ctl_ops.endpoint_health(client, out, eps))


@endpoint.command(
    "hashkv", cls=CtlCommand, short_help="Prints the KV history hash of each endpoint."
)
@click.option("--rev", type=Int64(), default=0, help="Maximum revision to hash (default: all).")
@click.option("--cluster", is_flag=True, help=_CLUSTER_HELP)
@click.pass_context
def endpoint_hashkv(ctx: click.Context, rev: int, cluster: bool) -> None:
    """Prints the hash of the key-value history of each endpoint, up to --rev."""
    eps = _endpoints(ctx, cluster)
    run_with(ctx, lambda client, out: ctl_ops.endpoint_hashkv(client, out, eps, rev))


@click.command(cls=CtlCommand, short_help="Defragments the storage of the members.")
@click.option("--cluster", is_flag=True, help=_CLUSTER_HELP)
@click.pass_context
def defrag(ctx: click.Context, cluster: bool) -> None:
    """Defragments the backend of each endpoint in turn (a progress bar on a terminal)."""
    eps = _endpoints(ctx, cluster)
    run_with(ctx, lambda client, out: ctl_ops.defrag(client, out, eps))


@click.group(cls=CtlGroup, short_help="Alarm related commands.")
def alarm() -> None:
    """Alarm related commands: list, disarm."""


@alarm.command("list", cls=CtlCommand, short_help="Lists all alarms.")
@click.pass_context
def alarm_list(ctx: click.Context) -> None:
    """Lists the raised alarms (for example NOSPACE when the quota is reached)."""
    run_with(ctx, ctl_ops.alarm_list)


@alarm.command("disarm", cls=CtlCommand, short_help="Disarms all alarms.")
@click.pass_context
def alarm_disarm(ctx: click.Context) -> None:
    """Disarms every raised alarm."""
    run_with(ctx, ctl_ops.alarm_disarm)


# -- snapshots --------------------------------------------------------------------------------


@click.group(cls=CtlGroup, short_help="Manages member snapshots.")
def snapshot() -> None:
    """Snapshot commands: save, restore, status."""


@snapshot.command("save", cls=CtlCommand, args_error="snapshot save expects one argument",
                  short_help="Stores a backend snapshot to a file.")  # fmt: skip
@click.argument("filename", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def snapshot_save(ctx: click.Context, filename: Path) -> None:
    """Streams a snapshot of one member's backend to FILENAME (a progress bar on a
    terminal). Needs exactly one endpoint; unbounded in time unless --command-timeout."""
    run_with(ctx, lambda client, out: ctl_ops.snapshot_save(client, out, filename))


@snapshot.command("status", cls=CtlCommand,
                  args_error="snapshot status requires exactly one argument",
                  short_help="Gets the status of a snapshot file.")  # fmt: skip
@click.argument("filename", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def snapshot_status(ctx: click.Context, filename: Path) -> None:
    """Prints hash, revision, total keys and total size of the snapshot FILENAME."""
    out = globals_of(ctx).output()
    ctl_ops.snapshot_status(out, filename)


@snapshot.command("restore", cls=CtlCommand,
                  args_error="snapshot restore requires exactly one argument",
                  short_help="Restores a snapshot into a new data directory.")  # fmt: skip
@click.argument("filename", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Path to the data directory (default: NAME.etcd).")  # fmt: skip
@click.option("--name", default="default", show_default=True,
              help="Human-readable name for this member.")  # fmt: skip
@click.option("--initial-cluster", default="default=http://localhost:2380", show_default=True,
              help="Initial cluster configuration for restore bootstrap.")  # fmt: skip
@click.option("--initial-cluster-token", default="etcd-cluster", show_default=True,
              help="Accepted as etcdctl does; etcdpy takes it from the member's own flag "
                   "when the member first starts.")  # fmt: skip
@click.option("--initial-advertise-peer-urls", default="http://localhost:2380",
              show_default=True,
              help="Accepted as etcdctl does; etcdpy takes them from the member's own flag "
                   "when the member first starts.")  # fmt: skip
@click.option("--skip-hash-check", is_flag=True,
              help="Ignore the snapshot integrity hash (needed for a copied db file).")  # fmt: skip
@click.pass_context
def snapshot_restore(ctx: click.Context, filename: Path, data_dir: Path | None, name: str,
                     initial_cluster: str, initial_cluster_token: str,
                     initial_advertise_peer_urls: str, skip_hash_check: bool) -> None:  # fmt: skip
    """Restores the snapshot FILENAME into a new data directory for member NAME (a
    progress bar on a terminal). Needs no server."""
    out = globals_of(ctx).output()
    ctl_ops.snapshot_restore(out, filename, data_dir=data_dir, name=name,
                             initial_cluster=initial_cluster,
                             skip_hash_check=skip_hash_check)  # fmt: skip


ADMIN_COMMANDS: tuple[click.Command, ...] = (lease, member, endpoint, defrag, alarm, snapshot)
