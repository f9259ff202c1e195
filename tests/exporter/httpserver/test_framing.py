"""Answer bytes, read back by an h11 client: what the server sends is valid HTTP/1.1."""

from __future__ import annotations

import h11
import pytest

from exporter.httpserver import framing


def server_after(request: bytes) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request)
    assert isinstance(conn.next_event(), h11.Request)
    return conn


def read_back(data: bytes, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    body = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        body += event.data
    return response, body


@pytest.mark.parametrize("status", [400, 431, 505])
def test_error_answers_close_and_say_what_went_wrong(status: int) -> None:
    conn = server_after(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response, body = read_back(framing.error_answer(conn, status))
    assert response.status_code == status
    assert (b"connection", b"close") in response.headers
    assert body == f"{status} {framing.PHRASES[status]}\n".encode()


def test_the_apps_connection_header_is_replaced_and_head_has_no_body() -> None:
    conn = server_after(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = framing.app_answer(conn, "200 OK", [("Connection", "keep-alive"),
                                               ("Content-Length", "5")], b"hello",
                              head=True, close=True)
    response, body = read_back(data, b"HEAD")
    assert body == b""
    names = [name for name, _ in response.headers]
    assert names.count(b"connection") == 1 and (b"connection", b"close") in response.headers
    assert b"date" in names


def test_internal_error_is_a_complete_answer() -> None:
    response, body = read_back(framing.internal_error())
    assert response.status_code == 500 and body == b"500 Internal Server Error\n"
