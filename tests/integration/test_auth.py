# Authentication is the server's: pgguard relays trust, password, md5 and SCRAM-SHA-256 exchanges
# untouched, so right passwords work and wrong ones fail with the same ErrorResponse as direct.
import struct

import psycopg2
import pytest

from pgwire import AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, RawConn, ServerError

# role -> (password, the authentication request code the server must send, password_encryption)
ROLES = {
  "auth_trust": ("trust-secret", None, None),
  "auth_password": ("clear-secret", AUTH_CLEARTEXT, None),
  "auth_md5": ("md5-secret", AUTH_MD5, "md5"),
  "auth_scram": ("scram-secret", AUTH_SASL, "scram-sha-256"),
}


@pytest.fixture(scope="module")
def auth_roles(pg):
  for role, (password, _, enc) in ROLES.items():
    pg.create_role(role, password, password_encryption=enc)
  pg.create_role("auth_reject", "reject-secret")
  stored = dict(pg.sql("SELECT rolname, left(rolpassword, 6) FROM pg_authid "
                       "WHERE rolname LIKE 'auth_%'"))
  # The md5 method only runs an md5 exchange when the stored hash is md5.
  assert stored["auth_md5"].startswith("md5")
  assert stored["auth_scram"].startswith("SCRAM-")
  return ROLES


def auth_codes(msgs):
  return [struct.unpack("!i", m.body[:4])[0] for m in msgs if m.type == b"R"]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_libpq_login_succeeds_with_right_password(target, auth_roles, role):
  password = auth_roles[role][0]
  conn = target.connect(user=role, password=password, dbname="postgres")
  try:
    with conn.cursor() as cur:
      cur.execute("SELECT current_user, 1 + 1")
      assert cur.fetchone() == (role, 2)
  finally:
    conn.close()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_server_runs_its_own_authentication_exchange(target, auth_roles, role):
  password, code, _ = auth_roles[role]
  with RawConn(target.host, target.port) as c:
    msgs = c.startup(role, "postgres", password=password)
    codes = auth_codes(msgs)
    # SCRAM: SASL, SASLContinue, SASLFinal; then AuthenticationOk for every method.
    expected = {None: [0], AUTH_CLEARTEXT: [AUTH_CLEARTEXT, 0], AUTH_MD5: [AUTH_MD5, 0],
                AUTH_SASL: [AUTH_SASL, 11, 12, 0]}[code]
    assert codes == expected
    assert msgs[-1].type == b"Z" and msgs[-1].body == b"I"


@pytest.mark.parametrize("role", ["auth_password", "auth_md5", "auth_scram"])
def test_wrong_password_fails_with_28P01_as_from_server(pg, target, auth_roles, role):
  def attempt(endpoint):
    with RawConn(endpoint.host, endpoint.port) as c:
      with pytest.raises(ServerError) as ei:
        c.startup(role, "postgres", password="wrong-password")
      # After the FATAL the server closes the connection.
      assert c.wait_closed(timeout=5)
      return ei.value.fields

  through = attempt(target)
  direct = attempt(pg)
  assert through["C"] == "28P01"
  assert through["S"] == "FATAL"
  assert through["M"] == 'password authentication failed for user "%s"' % role
  assert through == direct


@pytest.mark.parametrize("role", ["auth_password", "auth_md5", "auth_scram"])
def test_libpq_reports_wrong_password(target, auth_roles, role):
  with pytest.raises(psycopg2.OperationalError) as ei:
    target.connect(user=role, password="wrong-password", dbname="postgres")
  assert 'password authentication failed for user "%s"' % role in str(ei.value)


def test_trust_role_logs_in_without_password(target, auth_roles):
  with RawConn(target.host, target.port) as c:
    msgs = c.startup("auth_trust", "postgres", password=None)
    assert auth_codes(msgs) == [0]


def test_rejected_role_gets_28000_as_from_server(pg, target, auth_roles):
  def attempt(endpoint):
    with RawConn(endpoint.host, endpoint.port) as c:
      with pytest.raises(ServerError) as ei:
        c.startup("auth_reject", "postgres", password="reject-secret")
      return ei.value.fields

  through, direct = attempt(target), attempt(pg)
  assert through["C"] == "28000"
  assert "pg_hba.conf rejects connection" in through["M"]
  assert through == direct


def test_hba_rule_added_at_runtime_applies_through_pgguard(pg, target):
  pg.create_role("auth_late", "late-secret")
  try:
    with pytest.raises(ServerError) as ei:
      with RawConn(target.host, target.port) as c:
        c.startup("auth_late", "postgres", password="not-the-password")
    assert ei.value.fields["C"] == "28P01"
    pg.hba_reload(["host all auth_late 127.0.0.1/32 trust"])
    with RawConn(target.host, target.port) as c:
      assert auth_codes(c.startup("auth_late", "postgres", password=None)) == [0]
  finally:
    pg.hba_reload([])
