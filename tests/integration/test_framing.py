"""HTTP/1 message framing (RFC 9112 §6.3): a request whose body length is ambiguous is
refused with 400 and the connection closed, so nothing after it is served as a second
request (no request smuggling). Raw sockets, because http.client refuses to send these."""
import json
import socket
import unittest

from harness import ADMIN_TOKEN, Service

NEXT = b"GET /health/live/ HTTP/1.1\r\nHost: x\r\n\r\n"


def exchange(port, raw):
    """Sends raw bytes at once and reads until the server closes; returns everything read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


AUTHORIZATION = b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"


def post(headers, body):
    return (b"POST /test/echo/a/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + AUTHORIZATION +
            headers + b"\r\n" + body)


class Framing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service(workers=1).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def assert_refused(self, raw):
        # exchange() returns only once the server closed the connection.
        reply = exchange(self.svc.port, raw)
        self.assertTrue(reply.startswith(b"HTTP/1.1 400 "), reply[:200])
        self.assertEqual(reply.count(b"HTTP/1.1 "), 1, reply)
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertIn(b"connection: close", head.lower())
        self.assertIn(b"content-type: application/json", head.lower())
        self.assertIn("error", json.loads(body))
        return reply

    def test_transfer_encoding_with_content_length(self):
        # CL.TE: a proxy honouring Content-Length would see the smuggled GET as body.
        self.assert_refused(post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + NEXT))
        self.assert_refused(post(b"Transfer-Encoding: chunked\r\nContent-Length: 44\r\n", b"0\r\n\r\n" + NEXT))

    def test_two_content_lengths_even_when_equal(self):
        reply = self.assert_refused(post(b"Content-Length: 2\r\nContent-Length: 41\r\n", b"{}" + NEXT))
        self.assertEqual(json.loads(reply.partition(b"\r\n\r\n")[2]),
                         {"error": "bad request framing", "details": {"reason": "more than one Content-Length"}})
        self.assert_refused(post(b"Content-Length: 2\r\nContent-Length: 2\r\n", b"{}" + NEXT))
        self.assert_refused(post(b"Content-Length: 2, 2\r\n", b"{}" + NEXT))

    def test_malformed_content_length(self):
        # After a valid first one: reaches our check (JSON body).
        for bad in [b"abc", b"+2", b"-2", b"", b"2 2", b"0x2"]:
            with self.subTest(second=bad):
                self.assert_refused(post(b"Content-Length: 2\r\nContent-Length: " + bad + b"\r\n", b"{}" + NEXT))
        # Alone: h2o refuses it itself (400, connection closed; made JSON by our filter).
        for bad in [b"abc", b"+2", b"-2", b"", b"99999999999999999999", b"2 2"]:
            with self.subTest(only=bad):
                self.assert_refused(post(b"Content-Length: " + bad + b"\r\n", b"{}" + NEXT))

    def test_transfer_encoding_other_than_chunked(self):
        for te in [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity"]:
            with self.subTest(te=te):
                self.assert_refused(post(b"Transfer-Encoding: " + te + b"\r\n", b"0\r\n\r\n" + NEXT))
        self.assert_refused(post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + NEXT))

    def test_h2o_own_errors_are_json_too(self):
        reply = exchange(self.svc.port, post(b"Content-Length: 5000000\r\n", b"x"))
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply[:100])
        self.assertEqual(json.loads(reply.partition(b"\r\n\r\n")[2]), {"error": "request entity is too large"})
        reply = exchange(self.svc.port, post(b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"))
        self.assertEqual(json.loads(reply.partition(b"\r\n\r\n")[2]), {"error": "broken chunked-encoding"})

    def test_transfer_encoding_in_http_1_0(self):
        raw = (b"POST /test/echo/a/1 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        reply = exchange(self.svc.port, raw)
        self.assertRegex(reply[:12], rb"HTTP/1\.[01] 400")

    def test_folded_header_line(self):
        self.assert_refused(post(b"Content-Length: 2\r\nX-Long: a\r\n b\r\n", b"{}" + NEXT))

    def test_sound_requests_still_pipeline(self):
        ok = (post(b"Content-Length: 2\r\n", b"{}") + post(b"Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n") +
              b"GET /health/live/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = exchange(self.svc.port, ok)
        self.assertEqual(reply.count(b"HTTP/1.1 200 "), 3, reply)


if __name__ == "__main__":
    unittest.main()
