"""Asking a model server (runtime/wb_serve.py) over HTTP from the host: `/health` and
`/metrics` for `workbench serve status`, the supervisor and the TUI's Serving view. Plain
urllib: two GETs on 127.0.0.1 need no client library, and these run once a second per server.
"""

from __future__ import annotations

import urllib.error
import urllib.request


class ServerUnreachable(Exception):
    """The server did not answer (refused, timed out, reset), with the reason."""


def get(url: str, timeout: float) -> tuple[int, bytes]:
    """(HTTP status, body) of a GET; an error status is an answer too. ServerUnreachable when
    nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError) as exc:
        raise ServerUnreachable(str(getattr(exc, "reason", None) or exc)) from None
