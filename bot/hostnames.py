"""Host names and addresses as settings and URLs must spell them."""

from __future__ import annotations

import ipaddress
import re

# One label of a DNS name: letters, digits and inner hyphens, at most 63 long.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def host_problem(host: str) -> str | None:
    """Describe what is wrong with ``host``, or return None for an IP address or a
    DNS name of letters, digits, dots and hyphens.

    A name with non-ASCII letters must be given in punycode; the text then shows
    the punycode form when Python's IDNA codec can make it.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if not host:
        return "the host name is empty"
    if not host.isascii():
        return _idn_problem(host)
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return (
            f"{host!r} is not a valid host name (use only letters, digits, dots and "
            "hyphens, or an IP address)"
        )
    return None


def _idn_problem(host: str) -> str:
    try:
        punycode = host.encode("idna").decode("ascii")
    except UnicodeError:
        return (
            f"{host!r} is not a valid host name (use only letters, digits, dots and "
            "hyphens, or an IP address)"
        )
    return f"{host!r} has non-ASCII letters: give the name in punycode ({punycode})"
