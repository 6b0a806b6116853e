"""The HTTP/1.1 protocol the gateway serves: uvicorn's httptools protocol, its parse errors OpenAI-shaped.

A request the HTTP parser refuses (an invalid header name, a malformed request line) never reaches the app:
uvicorn answers 400 itself, in plain text. Here that answer carries the gateway's error body too, so every
4xx a client can get is an OpenAI error.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from llmdock.errors import InvalidRequest


class GatewayHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(InvalidRequest(msg).to_body())
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        self.transport.write(b"".join([*head, b"connection: close\r\n\r\n", body]))
        self.transport.close()
