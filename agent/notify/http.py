"""POST JSON with an idempotency key; failures classified for the outbox."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from agent.notify import DeliveryError, classify_http

USER_AGENT = "opsagent"


def post_json(
    url: str, body: Mapping[str, Any], key: str, timeout: float, headers: Mapping[str, str] | None = None
) -> Any:
    """POST ``body``; return the decoded JSON reply (None if not JSON).

    Timeouts and connection errors are retried, as are 429 and 5xx; the URL
    never appears in an error (robot URLs carry tokens).
    """
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json; charset=utf-8")
    req.add_header("User-Agent", USER_AGENT)
    req.add_header("Idempotency-Key", key)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read(1 << 20)
    except urllib.error.HTTPError as e:
        raise classify_http(e.code) from None
    except TimeoutError:
        raise DeliveryError("timed out", retry=True) from None
    except urllib.error.URLError as e:
        r = e.reason
        reason = r.strerror if isinstance(r, OSError) and r.strerror else type(r).__name__
        if isinstance(r, TimeoutError):
            reason = "timed out"
        raise DeliveryError(f"connection failed: {reason}", retry=True) from None
    except (ConnectionError, OSError) as e:
        raise DeliveryError(f"connection failed: {e.strerror or type(e).__name__}", retry=True) from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
