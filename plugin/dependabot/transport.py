"""HTTP through the host's `wasi:http/outgoing-handler`, synchronously.

One request at a time: `send` hands the request to the host, blocks on
the response's pollable and reads the body stream until it closes. Every
request carries timeouts (connect, first byte, between bytes). A request
that gets no answer raises `NoAnswer`, whose `kind` tells the caller how
to report it (the origin was refused, the name does not resolve, a
timeout…); the message never holds a header's value.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http

TIMEOUT_S = 30
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Response:
    status: int
    headers: dict   # lower-case name -> its values joined by ", ", as text
    body: bytes


class NoAnswer(Exception):
    """No response: `kind` is `denied`, `dns`, `tls`, `timeout`,
    `connection` or `other`; `message` says what happened, in words."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


_KINDS = {
    http.ErrorCode_HttpRequestDenied: ("denied", "the host does not allow this origin for the tenant"),
    http.ErrorCode_DestinationIpProhibited: ("denied", "the host does not allow this address"),
    http.ErrorCode_DnsError: ("dns", "the host name does not resolve"),
    http.ErrorCode_DestinationNotFound: ("dns", "the host name does not resolve"),
    http.ErrorCode_TlsCertificateError: ("tls", "its TLS certificate is not trusted"),
    http.ErrorCode_TlsProtocolError: ("tls", "the TLS handshake failed"),
    http.ErrorCode_TlsAlertReceived: ("tls", "the server ended the TLS handshake"),
    http.ErrorCode_DnsTimeout: ("timeout", f"timed out after {TIMEOUT_S} s"),
    http.ErrorCode_ConnectionTimeout: ("timeout", f"timed out after {TIMEOUT_S} s"),
    http.ErrorCode_ConnectionReadTimeout: ("timeout", f"timed out after {TIMEOUT_S} s"),
    http.ErrorCode_ConnectionWriteTimeout: ("timeout", f"timed out after {TIMEOUT_S} s"),
    http.ErrorCode_HttpResponseTimeout: ("timeout", f"timed out after {TIMEOUT_S} s"),
    http.ErrorCode_ConnectionRefused: ("connection", "connection refused"),
    http.ErrorCode_ConnectionTerminated: ("connection", "the connection closed before the answer was complete"),
    http.ErrorCode_HttpResponseIncomplete: ("connection", "the answer ended before it was complete"),
    http.ErrorCode_DestinationUnavailable: ("connection", "the host is unreachable"),
    http.ErrorCode_DestinationIpUnroutable: ("connection", "the host is unreachable"),
    http.ErrorCode_HttpResponseBodySize: ("other", "the answer is too large"),
}


def _no_answer(code):
    kind, message = _KINDS.get(type(code), ("other", f"the HTTP exchange failed ({type(code).__name__.removeprefix('ErrorCode_')})"))
    return NoAnswer(kind, message)


def _request(url, headers):
    parts = urlsplit(url)
    fields = http.Fields.from_list([(k, v.encode()) for k, v in headers])
    request = http.OutgoingRequest(fields)
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    return request


def _read_body(response):
    chunks, size = [], 0
    with response.consume() as body:
        with body.stream() as stream:
            while True:
                try:
                    chunk = stream.blocking_read(64 * 1024)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    code = http.http_error_code(e.value.value)
                    raise _no_answer(code) if code else NoAnswer("connection", "reading the answer failed")
                size += len(chunk)
                if size > MAX_BODY:
                    raise NoAnswer("other", "the answer is too large")
                chunks.append(chunk)
    return b"".join(chunks)


def send(url, headers):
    """GET `url` with `headers` (name, value) and return the `Response`,
    or raise `NoAnswer`."""
    try:
        request = _request(url, headers)
    except Err:
        raise NoAnswer("other", "the host refused the request's URL or headers")
    options = http.RequestOptions()
    nanos = TIMEOUT_S * 1_000_000_000
    # The host may shorten these, never lengthen them.
    for set_timeout in (options.set_connect_timeout, options.set_first_byte_timeout,
                        options.set_between_bytes_timeout):
        try:
            set_timeout(nanos)
        except Err:
            pass
    try:
        future = outgoing_handler.handle(request, options)
    except Err as e:
        raise _no_answer(e.value)
    with future:
        answer = future.get()
        if answer is None:
            with future.subscribe() as ready:
                ready.block()
            answer = future.get()
    if answer is None or isinstance(answer, Err):
        raise NoAnswer("other", "no response after waiting")
    if isinstance(answer.value, Err):
        raise _no_answer(answer.value.value)
    with answer.value.value as response:
        status = response.status()
        with response.headers() as fields:
            headers = {}
            for name, value in fields.entries():
                name, value = name.lower(), value.decode("utf-8", "replace")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = _read_body(response)
    return Response(status, headers, body)
