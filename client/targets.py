"""Where a gRPC client connects: one server, several, or a DNS name that resolves to several.

Every channel balances round-robin over the addresses its target resolves to, so a client of a
Kubernetes headless Service (one DNS name, one address per pod) spreads its calls over the pods
instead of pinning the first. Several `host:port` targets are resolved once, here, into one
`ipv4:` (or `ipv6:`) target: gRPC's resolvers take one name, and a list of addresses is the form
it balances over.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from xscore.api import wire
from xscore.api.errors import invalid

_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
ROUND_ROBIN: tuple[tuple[str, str], ...] = (("grpc.lb_policy_name", "round_robin"),)

ChannelOptions = tuple[tuple[str, int | str], ...]


def channel_target(target: str | Sequence[str]) -> tuple[str, ChannelOptions]:
    """(the one target gRPC connects to, the channel options) for one target or several:
    `host:port`, `dns:///name:port`, any gRPC URI, a comma-separated list or a sequence of
    `host:port`s."""
    targets = _split(target)
    if not targets:
        raise invalid("no gRPC target given", field="target")
    options: ChannelOptions = (*wire.CHANNEL_OPTIONS, *ROUND_ROBIN)
    if len(targets) == 1:
        return targets[0], options
    if any(one.startswith(_SCHEMES) for one in targets):
        raise invalid(f"several targets must each be host:port, got {', '.join(targets)}", field="target")
    addresses = [address for one in targets for address in _resolve(one)]
    families = {ipaddress.ip_address(host).version for host, _ in addresses}
    if len(families) > 1:
        raise invalid(f"targets {', '.join(targets)} mix IPv4 and IPv6 addresses; give one family",
                      field="target")
    if families == {4}:
        uri = "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)
    else:
        uri = "ipv6:" + ",".join(f"[{host}]:{port}" for host, port in addresses)
    # the authority (and the name a TLS certificate is checked against) is the first target's host
    authority = _host_port(targets[0])[0]
    return uri, (*options, ("grpc.default_authority", authority))


def _split(target: str | Sequence[str]) -> list[str]:
    if isinstance(target, str):
        if target.startswith(_SCHEMES):
            return [target]  # an ipv4:a,b list is one target already
        return [one.strip() for one in target.split(",") if one.strip()]
    return [one.strip() for one in target if one.strip()]


def _host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise invalid(f"target {target!r} is not host:port", field="target")
    return host.strip("[]"), int(port)


def _resolve(target: str) -> list[tuple[str, int]]:
    host, port = _host_port(target)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise invalid(f"target {target}: cannot resolve {host}: {exc.strerror}", field="target") from None
    unique: list[tuple[str, int]] = []
    for *_, address in found:
        entry = (str(address[0]), port)
        if entry not in unique:
            unique.append(entry)
    return unique


__all__ = ["ROUND_ROBIN", "channel_target"]
