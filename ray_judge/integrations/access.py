"""Who may reach the reward server: which hosts are loopback, and the token file.

The reward decides what the policy learns, so ``serve-rm`` follows the rule ``launch.sh``
follows for Ray: beyond loopback, a token. A host is loopback only when that is provable
from the string itself (a 127.0.0.0/8 or ::1 literal, or ``localhost``); any other name,
``0.0.0.0``, ``::`` and the empty host (every interface) are not. The token file is read
the way ssh reads a private key: refused when group or others have any access to it.

Every refusal is an :class:`AccessError` whose message says the fix.
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

__all__ = ["MAKE_TOKEN", "MIN_TOKEN_CHARS", "AccessError", "is_loopback", "read_token",
           "require_token"]

MIN_TOKEN_CHARS = 16
#: The shell line that makes a token (a command, not a secret: hence the noqa).
MAKE_TOKEN = (
    'python -c "import secrets; print(secrets.token_urlsafe(32))" '  # noqa: S105
    "> rm.token && chmod 600 rm.token")


class AccessError(ValueError):
    """A setting that would let others shape the reward; the message says the fix."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` provably listens on this machine only."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost":  # RFC 6761: always loopback; other names are not resolved
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def read_token(path: Path) -> str:
    """The token in ``path``, refused when others may read it or when it is short."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"cannot read --token-file {path}: {exc}") from exc
    if mode & 0o077:
        raise AccessError(
            f"permissions {mode:04o} for --token-file {path} are too open: a token that "
            f"group or others can read is no secret; run: chmod 600 {path}")
    if len(text) < MIN_TOKEN_CHARS:
        raise AccessError(
            f"the token in --token-file {path} has {len(text)} characters; at least "
            f"{MIN_TOKEN_CHARS} are required. Make one: {MAKE_TOKEN}")
    return text


def require_token(host: str, port: int, token: str | None, insecure: bool) -> bool:
    """Whether the server runs open beyond loopback (only with ``insecure``).

    Raises:
        AccessError: beyond loopback without a token and without ``insecure``.
    """
    if token is not None or is_loopback(host):
        return False
    if insecure:
        return True
    raise AccessError(
        f"--host {host!r} is not a loopback address, so anyone who can reach port {port} "
        "could read what the judge is asked and set the rewards the trainer gets: "
        f"serve-rm needs --token-file there. Make a token: {MAKE_TOKEN}; then serve-rm "
        f"--token-file rm.token, and OpenRLHF sends it in the URL: --reward.remote_url "
        f"http://rm:TOKEN@{_url_host(host)}:{port}/get_reward (--insecure-no-token starts "
        "without one)")


def _url_host(host: str) -> str:
    try:
        address = ipaddress.ip_address(host.strip())
    except ValueError:
        return host.strip() or "NODE"
    if address.is_unspecified:  # every interface: the trainer uses one of the node's names
        return "NODE"
    return f"[{address}]" if address.version == 6 else str(address)
