"""Posting one message to a Discord or Slack webhook, without ever writing its URL down.

A webhook URL is a credential (anyone holding it can post), so errors and logs name the
webhook by its host alone. The standard library's client is used on purpose: it logs
nothing, where httpx logs every request's full URL at INFO.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

# Discord refuses a `content` longer than 2,000 characters.
MAX_CHARS = 1900


class WebhookFailed(Exception):
    """A post that did not succeed; the message names the host, never the URL."""


def where(url: str) -> str:
    """The webhook as it may be shown: its scheme and host, the secret path left out."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme or 'http'}://{host}/…"


def body(text: str) -> bytes:
    """A JSON body both Discord (``content``) and Slack (``text``) accept."""
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1] + "…"
    return json.dumps({"content": text, "text": text}, ensure_ascii=False).encode("utf-8")


def post(url: str, text: str, timeout_s: float) -> None:
    """POST ``text`` to the webhook; raise WebhookFailed unless it answers 2xx in time."""
    request = urllib.request.Request(
        url,
        data=body(text),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "sovereign-alerts"},
    )
    shown = where(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise WebhookFailed(f"the webhook at {shown} answered HTTP {exc.code}") from None
    except TimeoutError:
        raise WebhookFailed(
            f"the webhook at {shown} did not answer within {timeout_s:g}s"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise WebhookFailed(
                f"the webhook at {shown} did not answer within {timeout_s:g}s"
            ) from None
        what = getattr(reason, "strerror", None) or type(reason).__name__
        raise WebhookFailed(f"the webhook at {shown} could not be reached ({what})") from None
    except (OSError, ValueError) as exc:
        raise WebhookFailed(
            f"the webhook at {shown} could not be reached ({type(exc).__name__})"
        ) from None
