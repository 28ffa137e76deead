"""``etcdpy gateway start``: etcd 3.4's ``etcd gateway start`` command line (etcdmain/gateway.go).

etcd parses this command with cobra/pflag, not Go's ``flag`` package as for the server: flags
are ``--name value`` or ``--name=value`` (one dash is a shorthand; only ``-h`` exists),
arguments that are not flags are allowed anywhere and ignored, a bad flag prints cobra's
``Error: ...`` and the usage on stderr and exits with 1. The checks before listening, their
order and their messages (on stdout, as etcd prints them) are etcd's.

DNS SRV discovery (``--discovery-srv``) is not built: it exits with 2 and names the flag.
``--discovery-srv-name``, ``--insecure-discovery`` and ``--trusted-ca-file`` only shape that
discovery in etcd (the CA checks the discovered endpoints); they are accepted and do nothing,
as they do in etcd without ``--discovery-srv``. The proxy passes TLS through untouched.
"""

from __future__ import annotations

import csv
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from etcdpy.cli.goflag import parse_bool
from etcdpy.config import ConfigError, go_quote, parse_duration

__all__ = ["GatewayOptions", "UsageError", "main", "parse_start_args", "split_host_port"]

PROG = "etcdpy"
EXIT_OK = 0
EXIT_FAILED = 1  # etcd's exit code for a bad flag and for every failed check
EXIT_NOT_BUILT = 2  # etcdpy's, for a feature it does not have


class UsageError(Exception):
    """A malformed command line; cobra prints the usage with it."""


class HelpRequested(Exception):
    pass


@dataclass(slots=True)
class GatewayOptions:
    listen_addr: str = "127.0.0.1:23790"
    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    retry_delay: float = 60.0
    discovery_srv: str = ""
    discovery_srv_name: str = ""
    insecure_discovery: bool = False
    trusted_ca_file: str = ""
    args: list[str] = field(default_factory=list)  # the arguments that are not flags (ignored)


# -- the flags ---------------------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as err:
        raise ValueError(str(err)) from None


def _bool(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError:
        raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax") from None


def _csv(text: str) -> list[str]:
    # pflag's string slices are one CSV record; an empty value is an empty list.
    if text == "":
        return []
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as err:
        raise ValueError(f"parse error on line 1: {err}") from None


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    kind: str  # pflag's type name in --help: string, strings, bool, duration
    parse: Callable[[str], Any]
    help: str
    default_text: str = ""  # "" when --help shows no default


_FLAGS: tuple[_Flag, ...] = (
    _Flag("listen-addr", "string", str, "listen address", '"127.0.0.1:23790"'),
    _Flag("discovery-srv", "string", str, "DNS domain used to bootstrap initial cluster"),
    _Flag("discovery-srv-name", "string", str, "service name to query when using DNS discovery"),
    _Flag("insecure-discovery", "bool", _bool, "accept insecure SRV records"),
    _Flag(
        "trusted-ca-file",
        "string",
        str,
        "path to the client server TLS CA file for verifying the discovered endpoints when "
        "discovery-srv is provided.",
    ),
    _Flag(
        "endpoints", "strings", _csv, "comma separated etcd cluster endpoints", "[127.0.0.1:2379]"
    ),
    _Flag(
        "retry-delay",
        "duration",
        _duration,
        "duration of delay before retrying failed endpoints",
        "1m0s",
    ),
)
_BY_NAME = {f.name: f for f in _FLAGS}


def _flag_lines(flags: Sequence[tuple[str, str]]) -> str:
    """pflag's flag list: ``(left column, usage)`` pairs, usages aligned in one column."""
    width = max(len(left) for left, _ in flags)
    return "".join(f"{left.ljust(width)}   {usage}\n" for left, usage in flags)


def _start_usage() -> str:
    rows: list[tuple[str, str]] = []
    shown = [*_FLAGS, _Flag("help", "bool", _bool, "help for start")]
    for f in sorted(shown, key=lambda f: f.name):
        left = "  -h, --help" if f.name == "help" else f"      --{f.name}"
        if f.kind != "bool":
            left += f" {f.kind}"
        usage = f.help + (f" (default {f.default_text})" if f.default_text else "")
        rows.append((left, usage))
    return f"Usage:\n  {PROG} gateway start [flags]\n\nFlags:\n{_flag_lines(rows)}"


def _gateway_usage() -> str:
    return (
        f"Usage:\n  {PROG} gateway [command]\n\n"
        "Available Commands:\n  start       start the gateway\n\n"
        f"Flags:\n{_flag_lines([('  -h, --help', 'help for gateway')])}\n"
        f'Use "{PROG} gateway [command] --help" for more information about a command.\n'
    )


def start_help() -> str:
    return f"start the gateway\n\n{_start_usage()}"


def gateway_help() -> str:
    return f"gateway related command\n\n{_gateway_usage()}"


# -- parsing -----------------------------------------------------------------------------------


def _parse_flags(args: Sequence[str], flags: dict[str, _Flag]) -> tuple[list[Any], list[str]]:
    """pflag's rules: ``(name, value)`` pairs in order, and the other arguments. Raises
    UsageError, or HelpRequested for ``-h``/``--help``."""
    values: list[Any] = []
    rest: list[str] = []
    wants_help = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i:])
            break
        if len(arg) < 2 or arg[0] != "-":
            rest.append(arg)
            continue
        if arg[1] != "-":  # shorthands; -h is the only one
            chars = arg[1:]
            while chars:
                if chars[0] != "h":
                    raise UsageError(f"unknown shorthand flag: '{chars[0]}' in -{chars}")
                wants_help = True
                chars = chars[1:]
                if chars.startswith("="):
                    wants_help = _flag_value(_HELP, chars[1:])
                    break
            continue
        name, has_value, value = arg[2:].partition("=")
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        if name == "help":
            wants_help = _flag_value(_HELP, value) if has_value else True
            continue
        flag = flags.get(name)
        if flag is None:
            raise UsageError(f"unknown flag: --{name}")
        if not has_value and flag.kind == "bool":
            value = "true"
        elif not has_value:
            if i >= len(args):
                raise UsageError(f"flag needs an argument: --{name}")
            value = args[i]
            i += 1
        values.append((flag, _flag_value(flag, value)))
    if wants_help:
        raise HelpRequested
    return values, rest


_HELP = _Flag("help", "bool", _bool, "")


def _flag_value(flag: _Flag, text: str) -> Any:
    try:
        return flag.parse(text)
    except ValueError as err:
        raise UsageError(
            f"invalid argument {go_quote(text)} for {go_quote('--' + flag.name)} flag: {err}"
        ) from None


def parse_start_args(args: Sequence[str]) -> GatewayOptions:
    """``gateway start``'s flags; raises UsageError or HelpRequested."""
    values, rest = _parse_flags(args, _BY_NAME)
    options = GatewayOptions(args=rest)
    endpoints_set = False
    for flag, value in values:
        if flag.name == "endpoints":
            # A string slice: the first use replaces the default, later ones append.
            options.endpoints = [*options.endpoints, *value] if endpoints_set else list(value)
            endpoints_set = True
        else:
            setattr(options, flag.name.replace("-", "_"), value)
    return options


# -- the checks etcd makes before listening ------------------------------------------------------


class AddrError(ValueError):
    pass


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise AddrError("missing port in address")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise AddrError("missing ']' in address")
        if end + 1 == len(hostport):
            raise AddrError("missing port in address")
        if end + 1 != colon:
            raise AddrError(
                "too many colons in address"
                if hostport[end + 1] == ":"
                else "missing port in address"
            )
        host, low, high = hostport[1:end], 1, end + 1
    else:
        host, low, high = hostport[:colon], 0, 0
        if ":" in host:
            raise AddrError("too many colons in address")
    if "[" in hostport[low:]:
        raise AddrError("unexpected '[' in address")
    if "]" in hostport[high:]:
        raise AddrError("unexpected ']' in address")
    return host, hostport[colon + 1 :]


def _strip_scheme(endpoint: str) -> str:
    # etcd keeps only the host of an endpoint that parses as a URL with one (http://a:1 -> a:1).
    try:
        netloc = urlsplit(endpoint).netloc
    except ValueError:
        return endpoint
    return netloc or endpoint


_LEADING_DIGITS = re.compile(r"[0-9]+")


def _endpoint_port(text: str) -> int:
    # etcd reads the port with fmt.Sscanf("%d") into a uint16: the leading digits, 0 when
    # there are none or they overflow.
    match = _LEADING_DIGITS.match(text)
    if match is None:
        return 0
    value = int(match.group())
    return value if value <= 0xFFFF else 0


def lookup_host(host: str) -> list[str]:
    """Go's ``net.LookupHost``: the host's addresses; OSError when it has none."""
    if not host:
        raise OSError("no such host")
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class CheckFailed(Exception):
    """A check before listening failed; the message is printed on stdout (exit code 1)."""


def check(options: GatewayOptions) -> tuple[list[tuple[str, int]], str, str]:
    """etcd's checks, in its order: the endpoints (as ``(host, port)``), and the listen
    address split into host and port. Raises CheckFailed with etcd's message."""
    endpoints = [_strip_scheme(e) for e in options.endpoints]
    parsed: list[tuple[str, int]] = []
    for endpoint in endpoints:
        try:
            host, port_text = split_host_port(endpoint)
        except AddrError:
            raise CheckFailed(f"error parsing endpoint {go_quote(endpoint)}") from None
        parsed.append((host, _endpoint_port(port_text)))
    try:
        listen_host, listen_port = split_host_port(options.listen_addr)
    except AddrError:
        raise CheckFailed(f"failed to validate listen address: {options.listen_addr}\n") from None
    try:
        listen_addresses = set(lookup_host(listen_host))
    except OSError:
        raise CheckFailed(f"failed to resolve listen host: {listen_host}\n") from None
    for host, port in parsed:
        try:
            addresses = lookup_host(host)
        except OSError:
            raise CheckFailed(f"failed to resolve endpoint host: {host}\n") from None
        if str(port) != listen_port:
            continue
        for address in addresses:
            if address in listen_addresses:
                raise CheckFailed(
                    f"SRV or endpoint ({host}:{port}->{address}:{port}) should not resolve to "
                    f"the gateway listen addr ({options.listen_addr})\n"
                )
    if not parsed:
        raise CheckFailed("no endpoints found\n")
    return parsed, listen_host, listen_port


def listen(host: str, port_text: str) -> socket.socket:
    """A listening socket as Go's ``net.Listen("tcp", host:port)`` makes it (one address of
    the host, IPv4 first); OSError with Go's message."""
    if port_text == "":
        port = 0
    elif port_text.isdigit():
        port = int(port_text)
        if port > 0xFFFF:
            raise OSError(f"listen tcp: address {port_text}: invalid port")
    else:
        try:
            port = socket.getservbyname(port_text, "tcp")
        except OSError:
            raise OSError(f"listen tcp: address tcp/{port_text}: unknown port") from None
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _type, _proto, _name, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
    except OSError as err:
        sock.close()
        reason = err.strerror or str(err)
        shown = f"[{host}]:{port_text}" if ":" in host else f"{host}:{port_text}"
        raise OSError(f"listen tcp {shown}: bind: {reason[:1].lower()}{reason[1:]}") from None
    sock.setblocking(False)
    return sock


# -- the commands ----------------------------------------------------------------------------


def _usage_error(err: UsageError, usage: str) -> int:
    # cobra: "Error: ..." and the usage; then etcd's main prints the error once more.
    sys.stderr.write(f"Error: {err}\n{usage}\n{err}")
    sys.stderr.flush()
    return EXIT_FAILED


def start(args: Sequence[str]) -> int:
    try:
        options = parse_start_args(args)
    except HelpRequested:
        sys.stdout.write(start_help())
        return EXIT_OK
    except UsageError as err:
        return _usage_error(err, _start_usage())
    if options.discovery_srv:
        print(
            f"{PROG}: --discovery-srv={options.discovery_srv}: not built yet in etcdpy (DNS SRV "
            "discovery; list the members with --endpoints); remove the setting or leave it at "
            f"its default ''\nSee '{PROG} gateway start --help'.",
            file=sys.stderr,
        )
        return EXIT_NOT_BUILT
    try:
        endpoints, listen_host, listen_port = check(options)
    except CheckFailed as err:
        sys.stdout.write(str(err))
        sys.stdout.flush()
        return EXIT_FAILED

    from etcdpy.observability.logging import configure_logging
    from etcdpy.tools import tcp_gateway

    # etcd's gateway logs with zap.NewProduction: JSON on stderr, ts in epoch seconds.
    configure_logging("info", ("stderr",), fmt="json", timestamps="epoch")
    try:
        listener = listen(listen_host, listen_port)
    except OSError as err:
        print(err, file=sys.stderr)
        return EXIT_FAILED
    remotes = [tcp_gateway.Remote(host, port) for host, port in endpoints]
    try:
        return tcp_gateway.run(listener, remotes, options.retry_delay)
    except KeyboardInterrupt:  # SIGINT before the loop's handler is in place
        return 130


def main(args: Sequence[str]) -> int:
    """``etcdpy gateway ...``: the arguments after ``gateway``."""
    # cobra finds the subcommand as the first argument that is not a flag.
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            if arg == "start":
                return start([*args[:i], *args[i + 1 :]])
            break
    try:
        _parse_flags(args, {})
    except HelpRequested:
        pass
    except UsageError as err:
        return _usage_error(err, _gateway_usage())
    sys.stdout.write(gateway_help())
    return EXIT_OK
