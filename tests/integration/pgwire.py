# A minimal raw PostgreSQL v3 wire client for tests that need to see or send exact bytes:
# malformed packets, SQLSTATEs of authentication failures, and byte-for-byte comparisons.
import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

# Authentication request codes the server sends in an 'R' message.
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


class WireError(Exception):
  pass


class Closed(WireError):
  """The peer closed the connection (EOF or reset)."""


def startup_packet(params, code=PROTOCOL_3_0):
  body = struct.pack("!i", code)
  for k, v in params.items():
    body += k.encode() + b"\0" + v.encode() + b"\0"
  body += b"\0"
  return struct.pack("!i", len(body) + 4) + body


def message(mtype, body=b""):
  return mtype + struct.pack("!i", len(body) + 4) + body


def query(sql):
  return message(b"Q", sql.encode() + b"\0")


TERMINATE = message(b"X")


def parse_fields(body):
  """ErrorResponse/NoticeResponse body -> {field code: value}."""
  fields = {}
  i = 0
  while i < len(body) and body[i] != 0:
    code = chr(body[i])
    end = body.index(b"\0", i + 1)
    fields[code] = body[i + 1:end].decode("utf-8", "replace")
    i = end + 1
  return fields


class Msg:
  __slots__ = ("type", "body", "raw")

  def __init__(self, mtype, body, raw):
    self.type = mtype
    self.body = body
    self.raw = raw

  @property
  def fields(self):
    return parse_fields(self.body)

  def __repr__(self):
    return "Msg(%r, %r)" % (self.type, self.body[:80])


class RawConn:
  """A blocking socket with a deadline on every read, recording every byte received."""

  def __init__(self, host, port, timeout=10.0):
    self.sock = socket.create_connection((host, port), timeout=timeout)
    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    self.timeout = timeout
    self.buf = b""
    self.received = bytearray()

  def close(self):
    try:
      self.sock.close()
    except OSError:
      pass

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def send(self, data):
    self.sock.sendall(data)

  def _fill(self, n, deadline):
    while len(self.buf) < n:
      left = deadline - time.monotonic()
      if left <= 0:
        raise WireError("timed out waiting for %d bytes (have %d)" % (n, len(self.buf)))
      self.sock.settimeout(left)
      try:
        chunk = self.sock.recv(65536)
      except socket.timeout:
        raise WireError("timed out waiting for %d bytes (have %d)" % (n, len(self.buf)))
      except (ConnectionResetError, BrokenPipeError) as e:
        raise Closed(str(e))
      if not chunk:
        raise Closed("EOF with %d bytes buffered" % len(self.buf))
      self.buf += chunk
      self.received += chunk

  def read_byte(self, timeout=None):
    deadline = time.monotonic() + (timeout or self.timeout)
    self._fill(1, deadline)
    b, self.buf = self.buf[:1], self.buf[1:]
    return b

  def read_msg(self, timeout=None):
    deadline = time.monotonic() + (timeout or self.timeout)
    self._fill(5, deadline)
    mtype = self.buf[:1]
    (length,) = struct.unpack("!i", self.buf[1:5])
    if length < 4:
      raise WireError("bad length %d from peer" % length)
    self._fill(1 + length, deadline)
    raw = self.buf[:1 + length]
    self.buf = self.buf[1 + length:]
    return Msg(mtype, raw[5:], raw)

  def read_until(self, mtypes, timeout=None):
    """Messages up to and including the first whose type is in mtypes."""
    deadline = time.monotonic() + (timeout or self.timeout)
    out = []
    while True:
      m = self.read_msg(timeout=max(0.01, deadline - time.monotonic()))
      out.append(m)
      if m.type in mtypes:
        return out

  def read_to_eof(self, timeout=None):
    """Every message until the peer closes; returns (messages, closed_cleanly)."""
    deadline = time.monotonic() + (timeout or self.timeout)
    out = []
    while True:
      try:
        out.append(self.read_msg(timeout=max(0.01, deadline - time.monotonic())))
      except Closed:
        return out

  def wait_closed(self, timeout=None):
    """True if the peer closes within timeout (any bytes before EOF are discarded)."""
    deadline = time.monotonic() + (timeout or self.timeout)
    while True:
      left = deadline - time.monotonic()
      if left <= 0:
        return False
      self.sock.settimeout(left)
      try:
        chunk = self.sock.recv(65536)
      except socket.timeout:
        return False
      except (ConnectionResetError, BrokenPipeError):
        return True
      if not chunk:
        return True
      self.received += chunk

  # --- session set-up ------------------------------------------------------

  def startup(self, user, database, password=None, extra=None, timeout=None):
    """Runs startup and authentication. Returns the messages received up to ReadyForQuery,
    or raises ServerError with the ErrorResponse the server (or proxy) sent."""
    params = {"user": user, "database": database}
    params.update(extra or {})
    self.send(startup_packet(params))
    msgs = []
    scram = None
    while True:
      m = self.read_msg(timeout=timeout)
      msgs.append(m)
      if m.type == b"E":
        raise ServerError(m.fields, msgs)
      if m.type == b"Z":
        return msgs
      if m.type != b"R":
        continue
      (code,) = struct.unpack("!i", m.body[:4])
      if code == AUTH_OK:
        continue
      if password is None:
        raise WireError("server asked for authentication code %d and no password given" % code)
      if code == AUTH_CLEARTEXT:
        self.send(message(b"p", password.encode() + b"\0"))
      elif code == AUTH_MD5:
        salt = m.body[4:8]
        inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
        outer = "md5" + hashlib.md5(inner + salt).hexdigest()
        self.send(message(b"p", outer.encode() + b"\0"))
      elif code == AUTH_SASL:
        mechs = [x.decode() for x in m.body[4:].split(b"\0") if x]
        if "SCRAM-SHA-256" not in mechs:
          raise WireError("no SCRAM-SHA-256 in %r" % mechs)
        scram = _Scram(password)
        first = scram.client_first()
        self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
      elif code == AUTH_SASL_CONTINUE:
        self.send(message(b"p", scram.client_final(m.body[4:])))
      elif code == AUTH_SASL_FINAL:
        scram.verify_server(m.body[4:])
      else:
        raise WireError("unsupported authentication code %d" % code)

  def simple_query(self, sql, timeout=None):
    """Sends a Query and returns every message up to ReadyForQuery."""
    self.send(query(sql))
    return self.read_until({b"Z"}, timeout=timeout)


class ServerError(WireError):
  def __init__(self, fields, msgs=None):
    super().__init__("%s %s: %s" % (fields.get("S"), fields.get("C"), fields.get("M")))
    self.fields = fields
    self.msgs = msgs or []


class _Scram:
  """Client side of SCRAM-SHA-256 (RFC 5802/7677) without channel binding."""

  def __init__(self, password):
    self.password = password.encode()
    self.nonce = base64.b64encode(os.urandom(18)).decode()

  def client_first(self):
    self.first_bare = "n=,r=" + self.nonce
    return ("n,," + self.first_bare).encode()

  def client_final(self, server_first):
    server_first = server_first.decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    if not attrs["r"].startswith(self.nonce):
      raise WireError("server nonce does not extend ours")
    salt = base64.b64decode(attrs["s"])
    iters = int(attrs["i"])
    salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = "c=biws,r=" + attrs["r"]
    auth_message = ",".join([self.first_bare, server_first, without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    self.server_signature = hmac.new(server_key, auth_message, "sha256").digest()
    return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()

  def verify_server(self, server_final):
    attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
    if base64.b64decode(attrs["v"]) != self.server_signature:
      raise WireError("server signature mismatch")


def error_fields(msgs):
  """Fields of the first ErrorResponse among msgs, or None."""
  for m in msgs:
    if m.type == b"E":
      return m.fields
  return None
