# What pgguard does with a server's odd answers to its SSLRequest: bytes after 'S' that TLS did
# not protect (CVE-2021-23222) and an answer that is neither 'S' nor 'N'. A fake server plays
# PostgreSQL's side; the client must get FATAL 08006 naming the reason, never a hang.
import socket
import threading

import psycopg2
import pytest


class FakeServer:
  """Accepts connections, reads the 8-byte SSLRequest, answers with fixed bytes, then waits."""

  def __init__(self, answer):
    self.answer = answer
    self.sock = socket.socket()
    self.sock.bind(("127.0.0.1", 0))
    self.sock.listen(8)
    self.port = self.sock.getsockname()[1]
    self.requests = []
    self.thread = threading.Thread(target=self.serve, daemon=True)
    self.thread.start()

  def serve(self):
    while True:
      try:
        conn, _ = self.sock.accept()
      except OSError:
        return
      with conn:
        conn.settimeout(5)
        try:
          self.requests.append(conn.recv(8))
          conn.sendall(self.answer)
          conn.recv(1024)  # until pgguard closes
        except OSError:
          pass

  def close(self):
    self.sock.close()


@pytest.mark.parametrize("answer, reason", [
  (b"S" + b"R\0\0\0\x08\0\0\0\0", "unencrypted data after accepting TLS"),
  (b"X", "something other than S or N"),
  (b"N", "does not support TLS"),
])
def test_odd_answers_to_the_ssl_request_fail_the_client_cleanly(pgguard, answer, reason):
  fake = FakeServer(answer)
  try:
    g = pgguard("--upstream-sslmode", "require", upstream="127.0.0.1:%d" % fake.port)
    with pytest.raises(psycopg2.OperationalError) as e:
      psycopg2.connect(host="127.0.0.1", port=g.port, user="x", dbname="x", sslmode="disable",
                       connect_timeout=5)
    assert "could not establish TLS with the upstream server" in str(e.value)
    assert reason in str(e.value)
    # The client's connection asked for TLS (SSLRequest, code 80877103) before anything else;
    # pgguard's upstream probe also connects, sending nothing.
    assert b"\x00\x00\x00\x08\x04\xd2\x16\x2f" in fake.requests
    assert g.returncode is None
  finally:
    fake.close()
