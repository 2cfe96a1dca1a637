"""How a connection to the exchange is made, and why one was not: the HTTP proxy a caller's
session sends its requests through (so that connections opened ahead are the ones they reuse),
what such a session's settings cannot do, and the words for each failure. The words never
quote a request (it holds the token) nor a proxy's answer or address (they may hold its
credentials).
"""

from __future__ import annotations

import asyncio
import os
from ssl import SSLContext
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
from aiohttp.helpers import get_env_proxy_for_url, netrc_from_env
from yarl import URL

from .._errors import SessionClosedError

if TYPE_CHECKING:
    from multidict import CIMultiDict

__all__ = [
    "ProxyRoute",
    "closed_under",
    "netrc_names",
    "proxy_route",
    "settings_fault",
    "verifying_context",
    "while_connecting",
    "why_not_connected",
]


@attrs.frozen
class ProxyRoute:
    """The HTTP proxy a session's requests go through, as aiohttp gives it to each of them.
    Its fields may hold the proxy's credentials: none of them is in its repr."""

    #: ``None``: the session names a proxy that is not a valid URL. An empty one
    #: (``proxy=""``) is none: aiohttp then connects straight to the exchange, yet keys the
    #: pool by it.
    url: URL | None = attrs.field(repr=False)
    auth: aiohttp.BasicAuth | None = attrs.field(repr=False)
    #: The headers sent to the proxy: the session's own with its ``proxy=``, else none.
    headers: CIMultiDict[str] | None = attrs.field(repr=False)

    @property
    def direct(self) -> bool:
        """Whether the requests go straight to the exchange all the same."""
        return self.url is not None and not self.url

    def options(self) -> dict[str, Any]:
        """A request's proxy arguments. The headers are a copy of their own for each: aiohttp
        writes into a request's proxy headers as it connects, and keys the pool by them."""
        headers = None if self.headers is None else self.headers.copy()
        return {"proxy": self.url, "proxy_auth": self.auth, "proxy_headers": headers}


async def proxy_route(http: aiohttp.ClientSession, url: URL) -> ProxyRoute | None:
    """The proxy of each request of ``http`` to ``url`` (``None``: they go straight there): the
    session's own ``proxy=``, else, when it trusts the environment, the proxy the environment
    names for ``url``. A connection opened ahead of the requests is one they reuse only if its
    proxy arguments are theirs: the pool keys its connections by them."""
    # aiohttp keeps a ClientSession's proxy= to itself; a request takes it, with the session's
    # headers as the proxy's, when it names no proxy of its own (as none of ours does).
    given = getattr(http, "_default_proxy", None)
    if given is not None:
        try:
            proxy: URL | None = URL(given)
        except (ValueError, TypeError):
            proxy = None
        return ProxyRoute(proxy, getattr(http, "_default_proxy_auth", None), http.headers)
    if not http.trust_env:
        return None
    try:
        # It may read ~/.netrc for the proxy's credentials: off the loop, as aiohttp does it.
        found, auth = await asyncio.to_thread(get_env_proxy_for_url, url)
    except LookupError:
        return None
    except ValueError:
        return ProxyRoute(None, None, None)  # the environment's proxy is not a valid URL
    return ProxyRoute(found, auth, None)


def netrc_names(host: str | None) -> bool:
    """Whether the environment's ``~/.netrc`` (or ``$NETRC``) has credentials for ``host``,
    which aiohttp adds to a request of a session that trusts the environment."""
    if host is None:
        return False
    found = netrc_from_env()
    return found is not None and found.authenticators(host) is not None


def verifying_context(connector: aiohttp.BaseConnector | None) -> SSLContext | None:
    """The SSL context a caller's connector was given, which its requests verify with (aiohttp
    keeps it to itself): a probe's handshake then trusts what theirs do."""
    context = getattr(connector, "_ssl", None)
    return context if isinstance(context, SSLContext) else None


def closed_under(what: str) -> SessionClosedError:
    return SessionClosedError(
        f"the aiohttp.ClientSession given as http_session was closed under {what}"
    )


def settings_fault(error: ValueError | TypeError) -> str:
    """What to check when aiohttp could not make a request of the caller's session: a
    ``ValueError`` (``InvalidURL`` among them) from a proxy address it cannot use (one with no
    ``http://``, say), a proxy's credentials it cannot encode, headers it refuses, or (for the
    stream) an authorization of the session's own beside the token. Its text is left out: it
    may quote the proxy's credentials."""
    return (
        f"the http_session's settings could not be used ({type(error).__name__}); check its "
        "proxy (an address such as http://host:3128, with Latin-1 credentials), its headers "
        "and its own authorization (auth=, or ~/.netrc with trust_env), and with trust_env "
        "the environment's proxy settings (HTTPS_PROXY and the like)"
    )


#: Where aiohttp makes connections: an error raised there left nothing of a request written.
_CONNECTOR_SOURCE = os.path.join("aiohttp", "connector.py")


def while_connecting(error: BaseException) -> bool:
    """Whether aiohttp raised ``error`` while making the request's connection (within its
    connector's ``connect``, which ends before a byte of the request is written)."""
    trace = error.__traceback__
    while trace is not None:
        code = trace.tb_frame.f_code
        if code.co_name == "connect" and code.co_filename.endswith(_CONNECTOR_SOURCE):
            return True
        trace = trace.tb_next
    return False


def why_not_connected(error: BaseException, url: URL | None = None) -> str:
    """What stopped a connection to ``url``, in a few words: the type of error, and for a
    certificate or a proxy what to check (never the request, which holds the token, nor the
    proxy's answer, which may quote its credentials)."""
    if isinstance(error, aiohttp.ClientHttpProxyError):
        if error.status == 407:
            advice = "check the proxy's credentials"
        elif error.status >= 500:
            advice = "the proxy could not reach the exchange"
        else:
            advice = "check the proxy's settings"
        return f"the proxy refused to open a tunnel to the exchange (HTTP {error.status}); {advice}"
    if isinstance(error, aiohttp.ClientProxyConnectionError) or (
        # Another host than the exchange's: aiohttp says so only for some of a proxy's faults.
        isinstance(error, aiohttp.ClientConnectorError)
        and url is not None
        and error.host not in (url.host, url.raw_host)
    ):
        return (
            f"the proxy could not be reached ({type(error).__name__}); check the "
            "http_session's proxy"
        )
    if isinstance(
        error, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError
    ) and while_connecting(error):
        # Met before any byte of the request, where only a proxy answers: its CONNECT's.
        return (
            f"the proxy opened no tunnel: it closed the connection, or answered its CONNECT with "
            f"what is not HTTP ({type(error).__name__}); check the http_session's proxy"
        )
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        reason = getattr(error.certificate_error, "verify_message", None) or "not trusted"
        return (
            f"the server's TLS certificate was refused: {reason}; check the system's "
            "certificate authorities, or give ssl= a context that trusts the server's own "
            "authority (a test server's)"
        )
    if isinstance(error, aiohttp.ClientSSLError):
        return "the TLS handshake failed; check that the URL is the exchange's HTTPS address"
    return type(error).__name__
