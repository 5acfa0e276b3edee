"""Where webhooks may go and how one is sent: URL rules, SSRF checks, one signed HTTP POST.

SSRF: an endpoint's host must resolve only to public unicast addresses (not private,
loopback, link-local, CGNAT, reserved, unspecified or multicast; IPv4-mapped IPv6 counts as
the IPv4 address).  The check runs when the endpoint is registered *and* before every attempt,
and the attempt connects to the very address that was checked (the ``Host`` header and TLS
name stay the URL's host), so a DNS answer that changes in between (DNS rebinding) cannot
redirect the request.  Redirects are never followed.  ``WEBHOOKS_ALLOW_PRIVATE`` lifts the
address check; it is meant for tests (a receiver on loopback) and is off by default.

Sending uses urllib3 with a connect timeout and a total deadline
(``WEBHOOKS_TIMEOUT_SECONDS``), no retries of its own (the schedule is ours) and reads at most
``EXCERPT_BYTES`` of the answer.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

MAX_URL_LENGTH = 2000
EXCERPT_BYTES = 1024
USER_AGENT = "Kinship-Webhooks/1.0"


class UrlRejected(ValueError):
    """The URL cannot be a webhook endpoint; the message says why (shown to the admin)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # IDNA-encoded, lower case, without brackets
    port: int
    path: str  # path and query, as sent
    host_header: str


@dataclass(frozen=True)
class Result:
    outcome: str  # success, http_error, redirect, timeout, connection_error, tls_error, blocked_address
    status_code: int | None = None
    latency_ms: int = 0
    excerpt: str = ""
    error: str = ""
    refused: bool = False  # no connection could be made: another address may work

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_name(host: str) -> str:
    """The IDNA (ASCII) form of a DNS name, checked label by label."""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRejected("The URL's host name is not valid.") from None
    host = host.removesuffix(".")
    if not host or len(host) > 253 or any(not label or len(label) > 63 for label in host.split(".")):
        raise UrlRejected("The URL's host name is not valid.")
    return host


def parse_url(url: str) -> Target:
    """Check the URL's shape (no network): http(s), a host, a valid port, no credentials."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRejected("A URL is required.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UrlRejected("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(f"The URL is malformed: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRejected("Only http and https URLs can receive webhooks.")
    if parts.username is not None or parts.password is not None:
        raise UrlRejected("Credentials in the URL are not supported; put a token in the path or query instead.")
    host = parts.hostname
    if not host:
        raise UrlRejected("The URL has no host.")
    if not _is_ip(host):
        host = _host_name(host)
    port = port or (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise UrlRejected("The URL's port is out of range.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    shown = f"[{host}]" if ":" in host else host
    return Target(scheme, host, port, path, shown if default else f"{shown}:{port}")


def address_refusal(address: str) -> str | None:
    """Why ``address`` may not receive webhooks, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved or non-public address"
    return None


def resolve(target: Target, *, allow_private: bool) -> list[str]:
    """The addresses to connect to, in the resolver's order: every one must be allowed."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise UrlRejected(f"The host {target.host} does not resolve.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UrlRejected(f"The host {target.host} does not resolve.")
    if not allow_private:
        for address in addresses:
            why = address_refusal(address)
            if why is not None:
                raise UrlRejected(f"The host {target.host} resolves to {why} ({address}); webhooks go to public "
                                  "addresses only.")
    return addresses


def check_url(url: str, *, allow_private: bool) -> str:
    """Registration-time check: shape and addresses.  Returns the URL as it will be stored."""
    target = parse_url(url)
    resolve(target, allow_private=allow_private)
    return url.strip()


def send(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Result:
    """POST ``body`` to ``url`` once; never raises for network trouble, the Result says what happened."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = parse_url(url)
        addresses = resolve(target, allow_private=allow_private)
    except UrlRejected as exc:
        return Result("blocked_address", error=str(exc), latency_ms=elapsed())
    # Like a browser: when one address refuses the connection (an IPv6 address on a host
    # without IPv6, one server of several down), try the next one.
    for address in addresses:
        result = _post(target, address, body, headers, timeout, elapsed)
        if not result.refused:
            break
    return result


def _post(target: Target, address: str, body: bytes, headers: dict[str, str], timeout: float, elapsed) -> Result:
    request_headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
    }
    kwargs: dict = {
        "host": address,
        "port": target.port,
        "timeout": urllib3.Timeout(total=timeout, connect=min(timeout, 5.0)),
        "retries": False,
        "maxsize": 1,
        "block": False,
    }
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            **kwargs, server_hostname=target.host, assert_hostname=target.host, cert_reqs="CERT_REQUIRED"
        )
    else:
        pool = urllib3.HTTPConnectionPool(**kwargs)
    try:
        response = pool.urlopen(
            "POST", target.path, body=body, headers=request_headers, redirect=False, retries=False,
            preload_content=False, assert_same_host=False, release_conn=False,
        )
        try:
            excerpt = response.read(EXCERPT_BYTES, decode_content=True) or b""
        except (ReadTimeoutError, Urllib3Timeout, ProtocolError, TimeoutError):
            excerpt = b""
        finally:
            response.close()
    except NewConnectionError as exc:  # before the timeouts: urllib3 derives it from ConnectTimeoutError
        return Result("connection_error", latency_ms=elapsed(), error=f"Could not connect: {exc}"[:500],
                      refused=True)
    except (ConnectTimeoutError, ReadTimeoutError, Urllib3Timeout, TimeoutError):
        return Result("timeout", latency_ms=elapsed(), error=f"No answer within {timeout:g} s.")
    except SSLError as exc:
        return Result("tls_error", latency_ms=elapsed(), error=f"TLS failed: {exc}"[:500])
    except (ProtocolError, OSError, urllib3.exceptions.HTTPError) as exc:
        return Result("connection_error", latency_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        pool.close()
    status = response.status
    # Any bytes may come back; PostgreSQL text cannot hold NUL.
    text = excerpt.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if 200 <= status < 300:
        return Result("success", status, elapsed(), text)
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        return Result("redirect", status, elapsed(), text, f"Redirects are not followed (Location: {location})."[:500])
    return Result("http_error", status, elapsed(), text, f"The endpoint answered {status}.")
