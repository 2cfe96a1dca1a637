"""A throwaway certificate authority, so that the fake exchange can serve HTTPS on loopback.

Made with trustme (a test dependency, imported only when a fake is asked for TLS). The
authority signs one certificate for ``127.0.0.1``, ``::1`` and ``localhost``; a client trusts
the fake, and nothing else, by trusting this authority in its own SSL context. Nothing about
verification is weakened for anyone else.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["FakeAuthority"]


class FakeAuthority:
    """A certificate authority made for one fake exchange, and its server certificate."""

    __slots__ = ("_authority", "_server")

    def __init__(self) -> None:
        try:
            import trustme
        except ImportError:
            raise ImportError(
                "FakeUpbit(tls=True) needs trustme: pip install trustme (it is in the dev extra)"
            ) from None
        self._authority: Any = trustme.CA()
        self._server: Any = self._authority.issue_cert("127.0.0.1", "::1", "localhost")

    def server_context(self) -> ssl.SSLContext:
        """The server's side: its certificate and key."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client's side: verifies certificates and host names as usual, trusting this
        authority only."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._authority.configure_trust(context)
        return context

    @property
    def pem(self) -> bytes:
        """The authority's certificate, PEM-encoded (for ``SSL_CERT_FILE`` or ``cafile=``)."""
        return bytes(self._authority.cert_pem.bytes())
