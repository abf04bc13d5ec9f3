# SSLRequest and GSSENCRequest without TLS configured: pgguard answers 'N' (to SSL like a server
# with ssl=off), the session continues in clear text, and clients that require TLS fail clearly.
import struct

from pgwire import GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, RawConn


def test_ssl_request_gets_N_and_startup_continues(target, appdb):
  with RawConn(target.host, target.port) as raw:
    raw.send(struct.pack("!ii", 8, SSL_REQUEST_CODE))
    assert raw.read_byte() == b"N"
    msgs = raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    assert msgs[-1].type == b"Z"
    rows = [m for m in raw.simple_query("SELECT 'clear'") if m.type == b"D"]
    assert rows[0].body.endswith(b"clear")


def test_gssenc_request_gets_N_and_startup_continues(pgguard, appdb):
  # Direct, a GSSAPI-enabled PostgreSQL answers 'G' even with no keytab; pgguard must read the
  # protocol, so it declines GSS encryption and the client continues in clear text.
  target = pgguard()
  with RawConn(target.host, target.port) as raw:
    raw.send(struct.pack("!ii", 8, GSSENC_REQUEST_CODE))
    assert raw.read_byte() == b"N"
    msgs = raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    assert msgs[-1].type == b"Z"


def test_psql_sslmode_prefer_connects_without_tls(target, appdb):
  r = target.psql("-qtA", sql="SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                  sslmode="prefer", **appdb)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "f"


def test_psql_sslmode_require_fails_clearly(target, appdb):
  r = target.psql(sql="SELECT 1", sslmode="require", **appdb)
  assert r.returncode == 2
  assert "server does not support SSL, but SSL was required" in r.stderr
