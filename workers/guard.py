"""The confidential guards: confidential work stays on the studio's machines.

They hold whatever the policy decided, so a routing mistake cannot leak a confidential
prompt. Every cloud backend calls :func:`refuse_confidential` before any network I/O, and
every local backend that talks to a server calls :func:`refuse_off_premises`: a "local"
server whose address is neither loopback nor in a network the studio declared
(``SOVEREIGN_PRIVATE_NETWORKS``) is not local.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from arbiter.errors import ConfidentialRefused
from workers.protocol import CompletionRequest


def refuse_confidential(req: CompletionRequest, provider: str) -> None:
    """Raise :class:`ConfidentialRefused` when ``req`` is confidential."""
    if req.confidential:
        raise ConfidentialRefused(
            f"a confidential request never goes to a cloud backend ({provider}); "
            "route it to the local tier"
        )


def studio_host(url: str, networks: Sequence[str] = ()) -> str | None:
    """None when every address of ``url``'s host is loopback or in ``networks``; else a
    sentence saying why it is not on the studio's machines."""
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return f"its host {host!r} does not resolve ({exc.strerror or exc})"
    allowed = [ipaddress.ip_network(n, strict=False) for n in networks]
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_loopback and not any(address in net for net in allowed):
            return (
                f"its host {host} ({address}) is neither loopback nor in SOVEREIGN_PRIVATE_NETWORKS"
            )
    return None


def refuse_off_premises(
    req: CompletionRequest, url: str, networks: Sequence[str], provider: str
) -> None:
    """A "local" backend on another network refuses confidential work before any I/O."""
    if not req.confidential:
        return
    why = studio_host(url, networks)
    if why is not None:
        raise ConfidentialRefused(
            f"the local backend {provider} at {url} refuses confidential work: {why}; "
            "declare the studio's network in SOVEREIGN_PRIVATE_NETWORKS"
        )
