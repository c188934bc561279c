"""One webhook POST, with the guard against server-side request forgery (SSRF).

The standard library's http.client, so no HTTP dependency: the host is resolved once, every
address it resolves to is checked (public only, unless WEBHOOK_ALLOW_PRIVATE), and the
connection is made to the address that was checked, so a DNS answer that changes between the
check and the connection (rebinding) cannot reach an internal service. TLS still verifies the
certificate of the host name. Redirects are never followed (a redirect could point anywhere).
No ORM here.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Of the answer only the status is used; reading a little of the body lets the connection close cleanly.
READ_LIMIT = 4096


class UnsafeURL(ValueError):
    """The URL may not be called: not http(s), no host, or an address that is not public."""


@dataclass(frozen=True)
class Result:
    status: int | None      # the HTTP status, None when no answer came
    error: str              # one sentence when the attempt did not succeed ("" for a 2xx)
    retry: bool             # worth another attempt (network error, 5xx, 408, 429)
    retry_after: int | None  # seconds the receiver asked for (Retry-After), if any
    duration_ms: int


def _refused_address(address: str) -> str | None:
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 scope ("%eth0") is no part of the address
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        return str(ip)
    return None


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse what is never sent to, without a DNS lookup (the endpoint's form and API call this):
    a scheme other than http/https, no host, a literal address that is not public, ``localhost``."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeURL("the URL contains spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host name")
    try:
        parts.port  # noqa: B018 -- reading it checks it
    except ValueError:
        raise UnsafeURL("the URL's port is not a number from 1 to 65535") from None
    if allow_private:
        return
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"{host} is this machine: private addresses are refused (WEBHOOK_ALLOW_PRIVATE)")
    try:
        refused = _refused_address(host)
    except ValueError:
        return  # a name: checked on every send, once it is resolved
    if refused:
        raise UnsafeURL(f"{refused} is not a public address: private addresses are refused (WEBHOOK_ALLOW_PRIVATE)")


def _resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to; UnsafeURL if any address of the host is not public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"the host name {host} could not be resolved ({exc.strerror})") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        for address in addresses:
            if refused := _refused_address(address):
                raise UnsafeURL(f"{host} resolves to {refused}, not a public address: private addresses are "
                                "refused (WEBHOOK_ALLOW_PRIVATE)")
    return addresses[0]


def _retry_after(response) -> int | None:
    value = (response.getheader("Retry-After") or "").strip()
    return int(value) if value.isdigit() else None


def post(url: str, body: bytes, headers: dict, *, timeout: float, allow_private: bool) -> Result:
    """POST ``body`` to ``url``: the outcome, never an exception. ``timeout``: seconds for the
    connection and for each read."""
    started = time.monotonic()

    def result(status, error, retry, retry_after=None):
        return Result(status, error[:300], retry, retry_after, int((time.monotonic() - started) * 1000))

    parts = urlsplit(url)
    try:
        check_url(url, allow_private=allow_private)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        address = _resolve(parts.hostname, port, allow_private=allow_private)
    except UnsafeURL as exc:
        return result(None, f"refused: {exc}", retry=False)
    except (ConnectionError, ValueError) as exc:  # ValueError: a port out of range
        return result(None, str(exc), retry=True)
    if https:
        connection = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    # Connect to the address checked above, not to a fresh lookup of the name; the Host header and
    # TLS (server name, certificate) still use the name. http.client opens its socket through this attribute.
    connection._create_connection = lambda _address, timeout=None, source_address=None: socket.create_connection(
        (address, port), timeout, source_address)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(READ_LIMIT)
        status = response.status
    except TimeoutError:
        return result(None, f"no answer within {timeout:g} s", retry=True)
    except ssl.SSLError as exc:
        return result(None, f"TLS failed: {exc.reason or exc}", retry=True)
    except OSError as exc:
        return result(None, f"connection failed: {exc.strerror or exc}", retry=True)
    except http.client.HTTPException as exc:
        return result(None, f"the answer was not valid HTTP ({type(exc).__name__})", retry=True)
    finally:
        connection.close()
    if 200 <= status < 300:
        return result(status, "", retry=False)
    if 300 <= status < 400:
        return result(status, f"answered {status} (a redirect): webhooks do not follow redirects, use the final URL",
                      retry=False)
    if status in (408, 429) or status >= 500:
        return result(status, f"answered {status}; tried again later", retry=True, retry_after=_retry_after(response))
    return result(status, f"answered {status}: not retried (a 4xx other than 408 and 429 is final)", retry=False)
