"""The Python SDK for feedback: send a score, comment or correction on a trace to a running gateway.

    from llmdock.feedback import send_feedback
    reply = client.chat.completions.with_raw_response.create(...)
    send_feedback(reply.headers["x-llmdock-trace-id"], thumbs="up",
                  base_url="http://127.0.0.1:8000", api_key="llmd-...")

The gateway's error comes back as the matching llmdock error (``NotFound`` for an unknown or foreign trace,
``InvalidRequest`` for a score out of range…), its message as the gateway wrote it.
"""

from __future__ import annotations

from typing import Any

import httpx

from llmdock.errors import from_gateway
from llmdock.feedback.scores import Source, check_feedback


def send_feedback(
    trace_id: str,
    *,
    base_url: str,
    api_key: str | None = None,
    thumbs: str | None = None,
    rating: int | None = None,
    name: str | None = None,
    value: float | None = None,
    comment: str = "",
    correction: str = "",
    source: Source = "user",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """POST the feedback to ``base_url`` (the gateway's root, with or without ``/v1``); returns it as stored."""
    fields = {"thumbs": thumbs, "rating": rating, "name": name, "value": value}
    body = {k: v for k, v in fields.items() if v is not None}
    body |= {"trace_id": trace_id, "comment": comment, "correction": correction, "source": source}
    check_feedback(body)  # a bad score fails here, before any network call
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/").removesuffix("/v1") + "/v1/feedback"
    response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    if response.status_code >= 400:
        raise from_gateway(response.status_code, response.text)
    result: dict[str, Any] = response.json()
    return result
