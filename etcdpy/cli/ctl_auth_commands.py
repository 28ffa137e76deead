"""etcdpyctl's ``auth``, ``user`` and ``role`` commands, with etcdctl 3.4's flags, argument
checks and messages (exit 128 for wrong arguments). ctl.py adds them to the root group; the
calls and the printing are in ctl_auth.
"""

from __future__ import annotations

import os
import sys

import click

from etcdpy.cli import ctl_auth
from etcdpy.cli.ctl_click import CtlCommand, CtlGroup, bool_option, run_with
from etcdpy.cli.ctl_client import EXIT_BAD_ARGS, CtlError
from etcdpy.cli.ctl_login import ask_password

__all__ = ["AUTH_COMMANDS"]


def _count(args: tuple[str, ...], ok: bool, message: str) -> None:
    if not ok:
        raise CtlError(message, EXIT_BAD_ARGS)


def _bytes(text: str) -> bytes:
    # Arguments arrive as str decoded with surrogateescape: back to the bytes typed.
    return os.fsencode(text)


def _ask(prompt: str) -> str:
    try:
        return ask_password(prompt)
    except OSError as err:
        raise CtlError(f"failed to ask password: {err}", EXIT_BAD_ARGS) from None


def _password_interactive(name: str) -> str:
    """user_command.go's readPasswordInteractive: asked twice, both must agree."""
    first = _ask(f"Password of {name}: ")
    if not first:
        raise CtlError("empty password", EXIT_BAD_ARGS)
    if first != _ask(f"Type password of {name} again for confirmation: "):
        raise CtlError("given passwords are different", EXIT_BAD_ARGS)
    return first


def _password_from_stdin() -> str:
    """``--interactive=false``: Go's fmt.Scanf("%s"), the first word of standard input."""
    line = sys.stdin.readline() if sys.stdin is not None else ""
    words = line.split()
    return words[0] if words else ""


# -- auth -------------------------------------------------------------------------------------


@click.group(cls=CtlGroup, short_help="Enable or disable authentication.")
def auth() -> None:
    """Enable or disable authentication, or show whether it is on."""


@auth.command(cls=CtlCommand, short_help="Enables authentication.")
@click.argument("args", nargs=-1, metavar="")
@click.pass_context
def enable(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Enables authentication. The root user must exist; it gets the root role if it lacks it."""
    _count(args, not args, "auth enable command does not accept any arguments")
    run_with(ctx, ctl_auth.auth_enable)


@auth.command(cls=CtlCommand, short_help="Disables authentication.")
@click.argument("args", nargs=-1, metavar="")
@click.pass_context
def disable(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Disables authentication (root only, once it is on)."""
    _count(args, not args, "auth disable command does not accept any arguments")
    run_with(ctx, ctl_auth.auth_disable)


@auth.command(cls=CtlCommand, short_help="Returns authentication status.")
@click.argument("args", nargs=-1, metavar="")
@click.pass_context
def status(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Whether authentication is on, and the auth revision (etcdctl 3.5's command; etcd 3.4
    servers do not have the call)."""
    _count(args, not args, "auth status command does not accept any arguments")
    run_with(ctx, ctl_auth.auth_status)


# -- users ------------------------------------------------------------------------------------


@click.group(cls=CtlGroup, short_help="User related commands.")
def user() -> None:
    """User related commands: add, delete, get, list, passwd, grant-role, revoke-role."""


@user.command("add", cls=CtlCommand, short_help="Adds a new user.")
@click.argument("args", nargs=-1, metavar="NAME[:PASSWORD]")
@bool_option("--interactive", default=True,
             help="Read password from stdin instead of interactive terminal.")  # fmt: skip
@click.option("--new-user-password", default="",
              help="Supply password from the command line flag.")  # fmt: skip
@bool_option("--no-password", default=False,
             help="Create a user without password (CN based auth only).")  # fmt: skip
@click.pass_context
def user_add(ctx: click.Context, args: tuple[str, ...], interactive: bool,
             new_user_password: str, no_password: bool) -> None:  # fmt: skip
    """Adds the user NAME. The password comes from NAME:PASSWORD, --new-user-password, the
    terminal (asked twice) or, with --interactive=false, the first word of standard input."""
    _count(args, len(args) == 1, "user add command requires user name as its argument")
    name, password = args[0], ""
    if not no_password:
        if new_user_password:
            password = new_user_password
        elif ":" in name:
            name, _, password = name.partition(":")
            if not name:
                raise CtlError("empty user name is not allowed", EXIT_BAD_ARGS)
        elif interactive:
            password = _password_interactive(name)
        else:
            password = _password_from_stdin()
    run_with(ctx, lambda client, out: ctl_auth.user_add(client, out, name, password,
                                                        no_password=no_password))  # fmt: skip


@user.command("delete", cls=CtlCommand, short_help="Deletes a user.")
@click.argument("args", nargs=-1, metavar="NAME")
@click.pass_context
def user_delete(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Deletes the user NAME."""
    _count(args, len(args) == 1, "user delete command requires user name as its argument")
    run_with(ctx, lambda client, out: ctl_auth.user_delete(client, out, args[0]))


@user.command("get", cls=CtlCommand, short_help="Gets detailed information of a user.")
@click.argument("args", nargs=-1, metavar="NAME")
@bool_option("--detail", default=False, help="Show permissions of roles granted to the user.")
@click.pass_context
def user_get(ctx: click.Context, args: tuple[str, ...], detail: bool) -> None:
    """Prints the roles of the user NAME (with --detail, each role's permissions)."""
    _count(args, len(args) == 1, "user get command requires user name as its argument")
    run_with(ctx, lambda client, out: ctl_auth.user_get(client, out, args[0], detail=detail))


@user.command("list", cls=CtlCommand, short_help="Lists all users.")
@click.argument("args", nargs=-1, metavar="")
@click.pass_context
def user_list(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Lists the names of all users."""
    _count(args, not args, "user list command requires no arguments")
    run_with(ctx, ctl_auth.user_list)


@user.command("passwd", cls=CtlCommand, short_help="Changes password of user.")
@click.argument("args", nargs=-1, metavar="NAME")
@bool_option("--interactive", default=True,
             help="If true, read password from stdin instead of interactive terminal.")  # fmt: skip
@click.pass_context
def user_passwd(ctx: click.Context, args: tuple[str, ...], interactive: bool) -> None:
    """Changes the password of the user NAME (asked twice on the terminal, or the first word
    of standard input with --interactive=false)."""
    _count(args, len(args) == 1, "user passwd command requires user name as its argument")
    name = args[0]
    password = _password_interactive(name) if interactive else _password_from_stdin()
    run_with(ctx, lambda client, out: ctl_auth.user_change_password(client, out, name, password))


@user.command("grant-role", cls=CtlCommand, short_help="Grants a role to a user.")
@click.argument("args", nargs=-1, metavar="NAME ROLE")
@click.pass_context
def user_grant_role(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Grants the role ROLE to the user NAME."""
    _count(args, len(args) == 2,
           "user grant command requires user name and role name as its argument")  # fmt: skip
    run_with(ctx, lambda client, out: ctl_auth.user_grant_role(client, out, args[0], args[1]))


@user.command("revoke-role", cls=CtlCommand, short_help="Revokes a role from a user.")
@click.argument("args", nargs=-1, metavar="NAME ROLE")
@click.pass_context
def user_revoke_role(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Revokes the role ROLE from the user NAME."""
    _count(args, len(args) == 2,
           "user revoke-role requires user name and role name as its argument")  # fmt: skip
    run_with(ctx, lambda client, out: ctl_auth.user_revoke_role(client, out, args[0], args[1]))


# -- roles ------------------------------------------------------------------------------------


@click.group(cls=CtlGroup, short_help="Role related commands.")
def role() -> None:
    """Role related commands: add, delete, get, list, grant-permission, revoke-permission."""


@role.command("add", cls=CtlCommand, short_help="Adds a new role.")
@click.argument("args", nargs=-1, metavar="ROLE")
@click.pass_context
def role_add(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Adds the role ROLE (with no permissions)."""
    _count(args, len(args) == 1, "role add command requires role name as its argument")
    run_with(ctx, lambda client, out: ctl_auth.role_add(client, out, args[0]))


@role.command("delete", cls=CtlCommand, short_help="Deletes a role.")
@click.argument("args", nargs=-1, metavar="ROLE")
@click.pass_context
def role_delete(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Deletes the role ROLE (and revokes it from every user)."""
    _count(args, len(args) == 1, "role delete command requires role name as its argument")
    run_with(ctx, lambda client, out: ctl_auth.role_delete(client, out, args[0]))


@role.command("get", cls=CtlCommand, short_help="Gets detailed information of a role.")
@click.argument("args", nargs=-1, metavar="ROLE")
@click.pass_context
def role_get(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Prints the keys and ranges ROLE may read and write."""
    _count(args, len(args) == 1, "role get command requires role name as its argument")
    run_with(ctx, lambda client, out: ctl_auth.role_get(client, out, args[0]))


@role.command("list", cls=CtlCommand, short_help="Lists all roles.")
@click.argument("args", nargs=-1, metavar="")
@click.pass_context
def role_list(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Lists the names of all roles."""
    _count(args, not args, "role list command requires no arguments")
    run_with(ctx, ctl_auth.role_list)


@role.command("grant-permission", cls=CtlCommand, short_help="Grants a key to a role.")
@click.argument("args", nargs=-1, metavar="ROLE read|write|readwrite KEY [END]")
@bool_option("--prefix", default=False, help="grant a prefix permission")
@bool_option("--from-key", default=False,
             help="grant a permission of keys that are greater than or equal to the given key "
                  "using byte compare")  # fmt: skip
@click.pass_context
def role_grant_permission(ctx: click.Context, args: tuple[str, ...], prefix: bool,
                          from_key: bool) -> None:  # fmt: skip
    """Lets ROLE read, write or both the key KEY, the keys in [KEY, END), the keys that start
    with KEY (--prefix) or every key >= KEY (--from-key). An empty KEY with --prefix or
    --from-key is every key."""
    _count(args, len(args) >= 3,
           "role grant command requires role name, permission type, and key [endkey] as its "
           "argument")  # fmt: skip
    perm_type = ctl_auth.PERMISSION_TYPES.get(args[1].upper())
    if perm_type is None:
        raise CtlError(f"invalid permission type: {args[1]}", EXIT_BAD_ARGS)
    span = ctl_auth.perm_range([_bytes(a) for a in args[2:]], prefix=prefix, from_key=from_key)
    run_with(ctx, lambda client, out: ctl_auth.role_grant_permission(client, out, args[0],
                                                                     perm_type, span))  # fmt: skip


@role.command("revoke-permission", cls=CtlCommand, short_help="Revokes a key from a role.")
@click.argument("args", nargs=-1, metavar="ROLE KEY [END]")
@bool_option("--prefix", default=False, help="revoke a prefix permission")
@bool_option("--from-key", default=False,
             help="revoke a permission of keys that are greater than or equal to the given key "
                  "using byte compare")  # fmt: skip
@click.pass_context
def role_revoke_permission(ctx: click.Context, args: tuple[str, ...], prefix: bool,
                           from_key: bool) -> None:  # fmt: skip
    """Takes back the permission ROLE has on KEY, [KEY, END), the prefix KEY (--prefix) or
    the keys >= KEY (--from-key): the same key and range it was granted on."""
    _count(args, len(args) >= 2,
           "role revoke-permission command requires role name and key [endkey] as its "
           "argument")  # fmt: skip
    keys = [_bytes(a) for a in args[1:]]
    span = ctl_auth.perm_range(keys, prefix=prefix, from_key=from_key)
    run_with(ctx, lambda client, out: ctl_auth.role_revoke_permission(client, out, args[0],
                                                                      keys[0], span))  # fmt: skip


AUTH_COMMANDS = (auth, user, role)
