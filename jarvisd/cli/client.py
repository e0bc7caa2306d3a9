"""A small, dependency-free client of the control socket (stdlib http.client over AF_UNIX).

jarvisctl uses it, tests use it, and scripts may: it imports nothing heavy so
`jarvisctl status` starts and answers in a few tens of milliseconds.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode


class DaemonUnreachable(Exception):
    """No daemon answers on the socket; the message says what to do."""


class DaemonError(Exception):
    """The daemon answered with an error object."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.headers: dict[str, str] = {}  # sent with every request

    def _open(
        self, method: str, path: str, body: Any, query: dict[str, Any] | None, timeout: float | None
    ) -> http.client.HTTPResponse:
        if query:
            clean = {k: v for k, v in query.items() if v is not None}
            path = f"{path}?{urlencode(clean, doseq=True)}" if clean else path
        timeout = timeout or self.timeout
        connection = _UnixConnection(self.socket_path, timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = dict(self.headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=headers)
            return connection.getresponse()
        except FileNotFoundError as error:
            raise DaemonUnreachable(
                f"is jarvisd running? socket {self.socket_path} not found "
                "(start it with `jarvisd`, or point --socket / JARVIS_SOCKET at it)"
            ) from error
        except ConnectionRefusedError as error:
            raise DaemonUnreachable(
                f"is jarvisd running? nothing listens on {self.socket_path} (a stale socket; "
                "start jarvisd again, it removes stale sockets)"
            ) from error
        except PermissionError as error:
            raise DaemonUnreachable(
                f"permission denied on {self.socket_path}: the socket belongs to another user"
            ) from error
        except TimeoutError as error:
            raise DaemonUnreachable(f"jarvisd did not answer within {timeout:.0f}s") from error

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The decoded JSON reply; DaemonError for an error reply."""
        response = self._open(method, path, body, query, timeout)
        raw = response.read()
        try:
            data = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            data = {"error": {"code": "bad_reply", "message": raw[:200].decode(errors="replace")}}
        if response.status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise DaemonError(
                response.status,
                str(error.get("code", "error")),
                str(error.get("message", f"HTTP {response.status}")),
                data if isinstance(data, dict) else {},
            )
        return data

    def stream(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """JSON lines from a streaming endpoint (progress events), until it closes."""
        response = self._open(method, path, body, query, None)
        if response.status >= 400:
            data = json.loads(response.read() or b"{}")
            error = data.get("error", {})
            raise DaemonError(
                response.status, error.get("code", "error"), error.get("message", ""), data
            )
        while True:
            line = response.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        return self.request("POST", path, body=body, query=query)
