# pgguard's TLS on both legs against PostgreSQL 15 with ssl=on, with real clients (psql, psycopg2,
# node-postgres): modes, verification failures, SCRAM channel binding, metrics, bad settings.
import json
import os
import re
import ssl
import struct
import time

import psycopg2
import pytest

from conftest import HERE, NODE_DIR
from nodeapps import node_env, require_node_modules, run_json
from pgwire import SSL_REQUEST_CODE, RawConn, ServerError, message, startup_packet
from tls_fixtures import certs, served_cert, tls_pg  # noqa: F401 (fixtures)

SSL_SQL = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
TLS_VERSION = re.compile(r"^TLSv1\.[23]$")
UPSTREAM_FAIL = "could not establish TLS with the upstream server"
CB_REFUSED = "SCRAM channel binding cannot pass through pgguard, which terminates TLS"
HANDSHAKES = "pgguard_tls_handshakes_total"
FAILURES = "pgguard_tls_handshake_failures_total"


# --- helpers -------------------------------------------------------------------

def start_guard(pgguard, tls_pg, certs, *args, cert="pgguard", upstream=None):
  """pgguard in front of tls_pg offering certificate `cert` (None: no --tls-cert); the default
  is pgguard's own, not the one tls_pg serves ("server"). Its connection defaults are tls_pg's
  superuser. upstream defaults to 127.0.0.1:PORT."""
  argv = []
  if cert:
    argv += ["--tls-cert", certs.crt(cert), "--tls-key", certs.key(cert)]
  g = pgguard(*(argv + list(args)), upstream=upstream or "127.0.0.1:%d" % tls_pg.port)
  g.defaults = dict(tls_pg.defaults)
  return g


def verified(certs, ca=None, **kw):
  """Keywords of a libpq client verifying pgguard as localhost against ca."""
  p = dict(host="localhost", sslmode="verify-full", sslrootcert=ca or certs.ca)
  p.update(kw)
  return p


def session(endpoint, **kw):
  """psycopg2 session -> (client leg on TLS?, pg_stat_ssl.ssl, pg_stat_ssl.version)."""
  conn = endpoint.connect(**kw)
  try:
    with conn.cursor() as cur:
      cur.execute(SSL_SQL)
      on, version = cur.fetchone()
    return bool(conn.info.ssl_in_use), on, version
  finally:
    conn.close()


def connect_error(endpoint, **kw):
  """The text of the error psycopg2 (libpq) reports when the connection must fail."""
  try:
    conn = endpoint.connect(**kw)
  except psycopg2.OperationalError as e:
    return str(e)
  conn.close()
  raise AssertionError("connection with %r succeeded but should have failed" % (kw,))


def metric(g, name):
  return g.metrics().get_value(name) or 0.0


def wait_metric(g, name, want, timeout=5.0):
  """Waits until the metric reaches want (pgguard handles a peer's alert asynchronously)."""
  deadline = time.monotonic() + timeout
  v = metric(g, name)
  while v < want and time.monotonic() < deadline:
    time.sleep(0.05)
    v = metric(g, name)
  return v


def tls_raw(endpoint, certs):
  """A RawConn that sent SSLRequest, got 'S' and verified the server as localhost."""
  raw = RawConn(endpoint.host, endpoint.port)
  raw.send(struct.pack("!ii", 8, SSL_REQUEST_CODE))
  assert raw.read_byte() == b"S"
  ctx = ssl.create_default_context(cafile=certs.ca)
  raw.sock = ctx.wrap_socket(raw.sock, server_hostname="localhost")
  return raw


def sasl_mechanisms(raw, user):
  """Sends a StartupMessage; returns the mechanisms of the AuthenticationSASL answer."""
  raw.send(startup_packet({"user": user, "database": "postgres"}))
  m = raw.read_msg()
  assert m.type == b"R", m
  code = struct.unpack("!i", m.body[:4])[0]
  assert code == 10, "expected AuthenticationSASL, got code %d" % code
  return [x.decode() for x in m.body[4:].split(b"\0") if x]


def raw_startup_error(endpoint, user, password):
  """Plaintext raw start-up that must fail: the ErrorResponse fields."""
  with RawConn(endpoint.host, endpoint.port) as raw:
    with pytest.raises(ServerError) as ei:
      raw.startup(user, "postgres", password)
  return ei.value.fields


# --- the main path -------------------------------------------------------------

def test_psql_verify_full_through_pgguard_verify_full_encrypts_both_legs(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                  "--upstream-ca", certs.ca, upstream="localhost:%d" % tls_pg.port)
  before_ok, before_bad = metric(g, HANDSHAKES), metric(g, FAILURES)
  r = g.psql("-qtA", "-c", "\\conninfo", sql=SSL_SQL,
             **verified(certs, channel_binding="disable"))
  assert r.returncode == 0, r.stderr
  # Client leg as psql sees it, then the pgguard -> PostgreSQL leg as PostgreSQL sees it.
  assert re.search(r"SSL connection \(protocol: TLSv1\.[23],", r.stdout), r.stdout
  on, version = r.stdout.strip().splitlines()[-1].split("|")
  assert on == "t" and TLS_VERSION.match(version), r.stdout
  assert metric(g, HANDSHAKES) - before_ok == 2  # one per leg
  assert metric(g, FAILURES) == before_bad


UPSTREAM_MODES = ["disable", "prefer", "require", "verify-ca", "verify-full"]
CLIENT_SSLMODES = ["disable", "prefer", "require"]


@pytest.mark.parametrize("upstream_mode", UPSTREAM_MODES)
@pytest.mark.parametrize("client_tls", ["disable", "allow", "require"])
def test_mode_matrix_connects_or_refuses_and_encrypts_each_leg_as_configured(
    pgguard, tls_pg, certs, client_tls, upstream_mode):
  args = ["--client-tls", client_tls, "--upstream-sslmode", upstream_mode]
  if upstream_mode.startswith("verify"):
    args += ["--upstream-ca", certs.ca]
  g = start_guard(pgguard, tls_pg, certs, *args, upstream="localhost:%d" % tls_pg.port)
  problems = []
  for sslmode in CLIENT_SSLMODES:
    kw = dict(sslmode=sslmode, channel_binding="disable")
    label = "client sslmode=%s" % sslmode
    if client_tls == "require" and sslmode == "disable":
      err = connect_error(g, **kw)
      if "pgguard requires TLS" not in err:
        problems.append("%s: expected the 'pgguard requires TLS' refusal, got %r" % (label, err))
      continue
    if client_tls == "disable" and sslmode == "require":
      err = connect_error(g, **kw)
      if "server does not support SSL, but SSL was required" not in err:
        problems.append("%s: expected libpq's no-SSL error, got %r" % (label, err))
      continue
    try:
      client_on, server_on, version = session(g, **kw)
    except psycopg2.Error as e:
      problems.append("%s: connection failed: %s" % (label, e))
      continue
    want_client = client_tls != "disable" and sslmode != "disable"
    want_server = upstream_mode != "disable"
    if client_on != want_client:
      problems.append("%s: client leg TLS=%s, expected %s" % (label, client_on, want_client))
    if server_on != want_server or (want_server and not TLS_VERSION.match(version or "")):
      problems.append("%s: upstream leg pg_stat_ssl=(%s, %s), expected ssl=%s"
                      % (label, server_on, version, want_server))
  assert not problems, "\n".join(problems) + "\npgguard log:\n" + g.log[-3000:]
  assert metric(g, FAILURES) == 0


def test_upstream_sslmode_allow_is_plaintext_and_default_prefer_is_tls(pgguard, tls_pg, certs):
  allow = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "allow", cert=None)
  assert session(allow, sslmode="disable") == (False, False, None)
  default = start_guard(pgguard, tls_pg, certs, cert=None)
  client_on, server_on, version = session(default, sslmode="disable")
  assert (client_on, server_on) == (False, True) and TLS_VERSION.match(version)


def test_upstream_verify_full_by_ip_address_matches_the_ip_san(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                  "--upstream-ca", certs.ca, cert=None, upstream="127.0.0.1:%d" % tls_pg.port)
  assert session(g, sslmode="disable")[1] is True


# --- upstream leg failures -----------------------------------------------------

def test_upstream_verify_ca_with_wrong_ca_fails_with_08006_and_the_reason(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-ca",
                  "--upstream-ca", certs.other_ca, cert=None)
  fields = raw_startup_error(g, tls_pg.superuser, tls_pg.password)
  assert fields["S"] == "FATAL" and fields["C"] == "08006", fields
  assert UPSTREAM_FAIL in fields["M"]
  assert "certificate verify failed: unable to get local issuer certificate" in fields["M"]
  err = connect_error(g, sslmode="disable")
  assert UPSTREAM_FAIL in err and "unable to get local issuer certificate" in err, err
  assert "upstream_tls_failed" in g.log
  assert wait_metric(g, FAILURES, 2) == 2  # one per connection attempt


def test_upstream_verify_full_host_name_mismatch_is_named(pgguard, tls_pg, certs, served_cert):
  served_cert("otherhost")
  full = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                     "--upstream-ca", certs.ca, cert=None, upstream="localhost:%d" % tls_pg.port)
  fields = raw_startup_error(full, tls_pg.superuser, tls_pg.password)
  assert fields["C"] == "08006", fields
  assert UPSTREAM_FAIL in fields["M"]
  assert 'server certificate for "otherhost" does not match host name "localhost"' in fields["M"]
  # The same certificate passes verify-ca: only the name is wrong.
  ca_only = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-ca",
                        "--upstream-ca", certs.ca, cert=None, upstream="localhost:%d" % tls_pg.port)
  assert session(ca_only, sslmode="disable")[1] is True


def test_upstream_expired_certificate_is_refused_clearly(pgguard, tls_pg, certs, served_cert):
  served_cert("expired")
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                  "--upstream-ca", certs.ca, cert=None, upstream="localhost:%d" % tls_pg.port)
  fields = raw_startup_error(g, tls_pg.superuser, tls_pg.password)
  assert fields["C"] == "08006", fields
  assert UPSTREAM_FAIL in fields["M"] and "certificate has expired" in fields["M"], fields
  err = connect_error(g, sslmode="disable")
  assert "certificate has expired" in err, err
  # sslmode require encrypts without verifying, as in libpq: the expired certificate passes.
  unverified = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "require", cert=None)
  assert session(unverified, sslmode="disable")[1] is True


def test_upstream_sslmode_require_against_ssl_off_server_says_no_tls(pgguard, pg):
  g = pgguard("--upstream-sslmode", "require")
  fields = raw_startup_error(g, pg.superuser, pg.password)
  assert fields["C"] == "08006", fields
  assert UPSTREAM_FAIL in fields["M"]
  assert "the server does not support TLS, but --upstream-sslmode requires it" in fields["M"]
  err = connect_error(g, sslmode="disable")
  assert "does not support TLS" in err, err
  # prefer falls back to plaintext against the same server.
  prefer = pgguard("--upstream-sslmode", "prefer")
  assert session(prefer, sslmode="disable") == (False, False, None)


# --- client leg failures -------------------------------------------------------

def test_client_verify_full_with_wrong_ca_fails_and_is_counted_and_others_still_served(
    pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs)
  assert metric(g, FAILURES) == 0
  err = connect_error(g, **verified(certs, ca=certs.other_ca, channel_binding="disable"))
  assert "certificate verify failed" in err, err
  assert wait_metric(g, FAILURES, 1) == 1
  g.wait_log(r"client_tls_failed")

  # A peer that asks for TLS and then does not speak it is counted too.
  with RawConn(g.host, g.port) as raw:
    raw.send(struct.pack("!ii", 8, SSL_REQUEST_CODE))
    assert raw.read_byte() == b"S"
    raw.send(b"GET / HTTP/1.0\r\n\r\n")
    assert raw.wait_closed(timeout=5)
  assert wait_metric(g, FAILURES, 2) == 2

  client_on, server_on, _ = session(g, **verified(certs, channel_binding="disable"))
  assert client_on and server_on
  assert g.returncode is None


def test_pgguard_certificate_from_another_ca_fails_client_verify_ca(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, cert="foreign")
  err = connect_error(g, **verified(certs, sslmode="verify-ca", channel_binding="disable"))
  assert "certificate verify failed" in err, err
  # A client that only wants encryption (no root certificate) is served.
  assert session(g, sslmode="require", channel_binding="disable")[:2] == (True, True)


@pytest.mark.parametrize("via", ["direct", "pgguard"])
def test_plaintext_bytes_sent_with_the_ssl_request_are_never_executed(pgguard, tls_pg, certs, via):
  # A man in the middle appends a StartupMessage for a trust-authenticated role and a query to
  # the client's SSLRequest. Nothing of it may run: it never went through TLS.
  tls_pg.create_role("auth_trust", None)
  tls_pg.sql("GRANT CREATE ON SCHEMA public TO auth_trust")
  table = "injected_via_" + via
  tls_pg.sql("DROP TABLE IF EXISTS " + table)
  ep = tls_pg if via == "direct" else start_guard(pgguard, tls_pg, certs, "--client-tls", "require")
  with RawConn(ep.host, ep.port) as raw:
    raw.send(struct.pack("!ii", 8, SSL_REQUEST_CODE)
             + startup_packet({"user": "auth_trust", "database": "postgres"})
             + message(b"Q", ("CREATE TABLE %s (x int)" % table).encode() + b"\0"))
    assert raw.read_byte() == b"S"
    raw.wait_closed(timeout=2)
  deadline = time.monotonic() + 2
  while time.monotonic() < deadline:
    assert not tls_pg.sql("SELECT 1 FROM pg_class WHERE relname = %s", (table,)), \
      "the injected query ran; pgguard log:\n" + (ep.log if via == "pgguard" else "")
    time.sleep(0.1)


# --- SCRAM and channel binding -------------------------------------------------
# pgguard presenting its own certificate (start_guard's default): SCRAM-SHA-256-PLUS is withheld,
# and libpq's default channel_binding=prefer cannot log in over TLS on both legs.

def test_tls_client_with_default_channel_binding_and_tls_upstream_gets_clear_28000(
    pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs)
  # Said at start, before any login could tell whether the certificates differ.
  start_line = re.search(r"event=channel_binding_limit note=(\"[^\"]*\") ways_out=(\"[^\"]*\")",
                         g.log)
  assert start_line, g.log
  assert "channel_binding=prefer" in start_line.group(1), start_line.group(0)
  for way_out in ("PostgreSQL's own certificate and key as --tls-cert and --tls-key",
                  "--upstream-sslmode=disable", "channel_binding=disable on the clients"):
    assert way_out in start_line.group(2), start_line.group(0)
  # libpq default channel_binding=prefer; sslmode=require so libpq does not retry in plaintext.
  started = time.monotonic()
  err = connect_error(g, **verified(certs, sslmode="require"))
  assert time.monotonic() - started < 5, "the refusal took %.1fs" % (time.monotonic() - started)
  assert CB_REFUSED in err, err
  assert "channel_binding=disable" in err, err
  assert "only when it presents PostgreSQL's own certificate" in err, err
  g.wait_log(r"client asked for SCRAM channel binding")
  g.wait_log(r"event=channel_binding conn=\d+ passes=no why=\"the certificate pgguard presents is "
             r"not PostgreSQL's")

  # On the wire: PLUS is stripped from the list, and a "y" GS2 header earns FATAL 28000.
  with tls_raw(tls_pg, certs) as direct:
    assert "SCRAM-SHA-256-PLUS" in sasl_mechanisms(direct, tls_pg.superuser)
  with tls_raw(g, certs) as raw:
    assert sasl_mechanisms(raw, tls_pg.superuser) == ["SCRAM-SHA-256"]
    first = b"y,,n=,r=" + os.urandom(12).hex().encode()
    raw.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    m = raw.read_msg()
    assert m.type == b"E", m
    f = m.fields
    assert (f["S"], f["C"], f["M"]) == ("FATAL", "28000", CB_REFUSED), f
    assert "Connect with channel_binding=disable." in f["D"], f
    assert raw.wait_closed(timeout=5)


def test_tls_client_channel_binding_disable_with_tls_upstream_works(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs)
  client_on, server_on, version = session(g, **verified(certs, channel_binding="disable"))
  assert client_on and server_on and TLS_VERSION.match(version)


def test_tls_client_channel_binding_require_fails_in_libpq(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs)
  err = connect_error(g, **verified(certs, channel_binding="require"))
  assert "channel binding" in err, err
  assert "channel binding is required, but server did not offer" in err, err
  # psql too, promptly and with libpq's own message.
  started = time.monotonic()
  r = g.psql(sql="SELECT 1", timeout=30, **verified(certs, channel_binding="require"))
  assert time.monotonic() - started < 5, "psql took %.1fs" % (time.monotonic() - started)
  assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
  assert "channel binding is required, but server did not offer" in r.stderr, r.stderr
  assert g.returncode is None


def test_libpq_sslmode_prefer_retries_in_plaintext_after_the_channel_binding_refusal(
    pgguard, tls_pg, certs):
  # libpq's documented behaviour for sslmode=prefer: an error over TLS makes it retry without
  # TLS. With defaults (sslmode=prefer, channel_binding=prefer) the login succeeds, but the
  # client leg ends up in clear text.
  g = start_guard(pgguard, tls_pg, certs)
  client_on, server_on, _ = session(g, sslmode="prefer")
  assert (client_on, server_on) == (False, True)
  assert "client asked for SCRAM channel binding" in g.log
  # With --client-tls=require the plaintext retry is refused too: libpq's defaults cannot log in
  # and its message carries both refusals.
  strict = start_guard(pgguard, tls_pg, certs, "--client-tls", "require")
  err = connect_error(strict, sslmode="prefer")
  assert CB_REFUSED in err and "pgguard requires TLS" in err, err


@pytest.mark.parametrize("cert", [None, "server"])
def test_plaintext_client_with_tls_upstream_does_plain_scram(pgguard, tls_pg, certs, cert):
  # With or without a certificate (even the server's own) for TLS clients.
  g = start_guard(pgguard, tls_pg, certs, cert=cert)
  for cb in ("prefer", "disable"):
    client_on, server_on, version = session(g, sslmode="disable", channel_binding=cb)
    assert (client_on, server_on) == (False, True) and TLS_VERSION.match(version)
  with RawConn(g.host, g.port) as raw:
    assert sasl_mechanisms(raw, tls_pg.superuser) == ["SCRAM-SHA-256"]
  if cert is None:
    assert "channel_binding_limit" not in g.log, g.log


def test_tls_client_with_plaintext_upstream_works_unless_binding_required(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "disable")
  for cb in ("prefer", "disable"):
    assert session(g, **verified(certs, channel_binding=cb)) == (True, False, None), cb
  err = connect_error(g, **verified(certs, channel_binding="require"))
  assert "channel binding is required" in err, err
  # Nothing to warn about: PostgreSQL's leg cannot be TLS.
  assert "channel_binding_limit" not in g.log, g.log


# pgguard presenting PostgreSQL's own certificate and key: channel binding works end to end.

def test_psql_channel_binding_require_through_pgguard_presenting_the_servers_certificate(
    pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                  "--upstream-ca", certs.ca, cert="server", upstream="localhost:%d" % tls_pg.port)
  r = g.psql("-qtA", "-c", "\\conninfo", sql=SSL_SQL + " AND 6 * 7 = 42",
             **verified(certs, channel_binding="require"))
  assert r.returncode == 0, r.stderr + "\npgguard log:\n" + g.log[-3000:]
  assert re.search(r"SSL connection \(protocol: TLSv1\.[23],", r.stdout), r.stdout
  on, version = r.stdout.strip().splitlines()[-1].split("|")
  assert on == "t" and TLS_VERSION.match(version), r.stdout
  g.wait_log(r"event=channel_binding conn=\d+ passes=yes why=\"pgguard presents PostgreSQL's own "
             r"certificate")
  assert "client asked for SCRAM channel binding" not in g.log
  # The offer went through untouched, -PLUS and all.
  with tls_raw(tls_pg, certs) as direct:
    want = sasl_mechanisms(direct, tls_pg.superuser)
  with tls_raw(g, certs) as raw:
    assert sasl_mechanisms(raw, tls_pg.superuser) == want
  assert "SCRAM-SHA-256-PLUS" in want


@pytest.mark.parametrize("sslmode", ["prefer", "require"])
def test_libpq_default_channel_binding_prefer_binds_with_the_servers_certificate(
    pgguard, tls_pg, certs, sslmode):
  # libpq's defaults (channel_binding=prefer; sslmode=prefer needs no plaintext retry here).
  g = start_guard(pgguard, tls_pg, certs, cert="server")
  conn = g.connect(sslmode=sslmode)
  try:
    assert conn.info.ssl_in_use
    with conn.cursor() as cur:
      cur.execute(SSL_SQL)
      on, version = cur.fetchone()
      assert on is True and TLS_VERSION.match(version)
  finally:
    conn.close()
  assert "client asked for SCRAM channel binding" not in g.log
  g.wait_log(r"passes=yes")
  # And channel_binding=disable still does plain SCRAM.
  assert session(g, sslmode="require", channel_binding="disable")[:2] == (True, True)


def test_scram_y_flag_with_the_servers_certificate_gets_postgresql_downgrade_verdict(
    pgguard, tls_pg, certs):
  # -PLUS was offered, so a client that claims "y" is PostgreSQL's to refuse, not pgguard's.
  g = start_guard(pgguard, tls_pg, certs, cert="server")
  with tls_raw(g, certs) as raw:
    assert "SCRAM-SHA-256-PLUS" in sasl_mechanisms(raw, tls_pg.superuser)
    first = b"y,,n=,r=" + os.urandom(12).hex().encode()
    raw.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    m = raw.read_msg()
    assert m.type == b"E", m
    assert m.fields["C"] == "28000" and m.fields["M"] != CB_REFUSED, m.fields
    assert "SCRAM channel binding negotiation error" in m.fields["M"], m.fields
    assert "this server does support channel binding" in m.fields["D"], m.fields
    assert raw.wait_closed(timeout=5)
  assert "client asked for SCRAM channel binding" not in g.log


def test_channel_binding_is_decided_at_each_login_as_the_servers_certificate_changes(
    pgguard, tls_pg, certs, served_cert):
  g = start_guard(pgguard, tls_pg, certs, cert="server")
  assert session(g, **verified(certs, channel_binding="require"))[:2] == (True, True)
  # PostgreSQL now serves another certificate: pgguard's is no longer the server's.
  served_cert("foreign")
  err = connect_error(g, **verified(certs, channel_binding="require"))
  assert "channel binding is required, but server did not offer" in err, err
  assert session(g, **verified(certs, channel_binding="disable"))[:2] == (True, True)
  lines = re.findall(r"event=channel_binding conn=\d+ passes=(yes|no)", g.log)
  assert lines == ["yes", "no"], g.log


# --- other clients -------------------------------------------------------------

def test_psycopg2_over_tls_runs_a_query_and_round_trips_a_2mb_row(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                  "--upstream-ca", certs.ca, upstream="localhost:%d" % tls_pg.port)
  conn = g.connect(**verified(certs, channel_binding="disable"))
  try:
    assert conn.info.ssl_in_use
    assert conn.info.ssl_attribute("protocol") in ("TLSv1.2", "TLSv1.3")
    with conn.cursor() as cur:
      cur.execute(SSL_SQL)
      on, version = cur.fetchone()
      assert on is True and TLS_VERSION.match(version)
      data = os.urandom(2 * 1024 * 1024)
      cur.execute("SELECT %s::bytea, length(%s::bytea)", (psycopg2.Binary(data), psycopg2.Binary(data)))
      back, length = cur.fetchone()
      assert length == len(data)
      assert bytes(back) == data
      cur.execute("SELECT repeat('z', 2 * 1024 * 1024) || 'end'")
      text = cur.fetchone()[0]
      assert len(text) == 2 * 1024 * 1024 + 3 and text.endswith("zend")
  finally:
    conn.close()


def run_node_client(g, certs, **extra):
  require_node_modules()
  cfg = dict(host="127.0.0.1", port=g.port, user=g.defaults["user"], password=g.defaults["password"],
             database="postgres", ca=certs.ca, servername="localhost")
  cfg.update(extra)
  env = node_env()
  env["NODE_PATH"] = str(NODE_DIR / "node_modules")
  return run_json(["node", str(HERE / "tls_node_client.mjs"), json.dumps(cfg)], timeout=60, env=env)


def test_node_postgres_over_tls_runs_a_query_and_round_trips_a_2mb_row(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, "--upstream-sslmode", "verify-full",
                  "--upstream-ca", certs.ca, upstream="localhost:%d" % tls_pg.port)
  out = run_node_client(g, certs)
  assert "connectError" not in out, out
  assert out["clientTls"]["encrypted"] is True and out["clientTls"]["authorized"] is True, out
  assert out["clientTls"]["protocol"] in ("TLSv1.2", "TLSv1.3"), out
  assert out["serverLeg"]["ssl"] is True and TLS_VERSION.match(out["serverLeg"]["version"]), out
  assert out["answer"] == 42
  assert out["bigRow"] == {"len": 2 * 1024 * 1024, "intact": True, "md5Matches": True}


def test_node_postgres_with_channel_binding_enabled_gets_the_28000_refusal(pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs)
  out = run_node_client(g, certs, enableChannelBinding=True)
  assert out.get("connectError", {}).get("code") == "28000", out
  assert out["connectError"]["message"] == CB_REFUSED


def test_node_postgres_channel_binding_binds_with_the_servers_certificate(
    pgguard, tls_pg, certs):
  g = start_guard(pgguard, tls_pg, certs, cert="server")
  out = run_node_client(g, certs, enableChannelBinding=True)
  assert "connectError" not in out, out
  assert out["serverLeg"]["ssl"] is True and out["answer"] == 42, out
  assert "passes=yes" in g.log


# --- bad settings --------------------------------------------------------------

def test_bad_tls_cert_path_exits_2_naming_the_file(pgguard, certs, tmp_path):
  missing = str(tmp_path / "no-such-dir" / "pgguard.crt")
  g = pgguard("--tls-cert", missing, "--tls-key", certs.key("server"), expect_fail=True)
  assert g.returncode == 2, g.log
  assert missing in g.log, g.log
  # A key that belongs to another certificate is refused at start-up as well.
  g = pgguard("--tls-cert", certs.crt("server"), "--tls-key", certs.key("foreign"), expect_fail=True)
  assert g.returncode == 2, g.log
  assert "does not match" in g.log and certs.key("foreign") in g.log, g.log


def test_client_tls_require_without_a_certificate_exits_2(pgguard):
  g = pgguard("--client-tls", "require", expect_fail=True)
  assert g.returncode == 2, g.log
  assert "--client-tls=require needs --tls-cert and --tls-key" in g.log, g.log
