# A client that does not wait: StartupMessage and its first Query in one write, before the server
# has answered anything. PostgreSQL reads the query after authentication; pgguard must keep the
# bytes it read while still connecting upstream and relay them, in order, once connected.
import pytest

from pgwire import RawConn, query, startup_packet


@pytest.fixture(scope="module")
def trust_role(pg):
  pg.create_role("wire_trust", None)


@pytest.mark.parametrize("via", ["direct", "pgguard"])
def test_query_sent_with_the_startup_packet_runs_once_after_login(pg, pgguard, trust_role, via):
  ep = pg if via == "direct" else pgguard()
  with RawConn(ep.host, ep.port) as raw:
    raw.send(startup_packet({"user": "wire_trust", "database": "postgres"})
             + query("SELECT 40 + 2 AS answer"))
    msgs = raw.read_until({b"Z"})               # authentication ends with ReadyForQuery
    assert msgs[0].type == b"R"
    msgs = raw.read_until({b"Z"})               # then the early query's own cycle
    types = [m.type for m in msgs]
    assert types == [b"T", b"D", b"C", b"Z"], types
    assert msgs[1].body.endswith(b"42")
