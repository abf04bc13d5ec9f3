# node-postgres (the `pg` npm package) through pgguard: parameters, 5 MB rows, cancel, error codes.
from conftest import NODE_DIR
from nodeapps import require_node_modules, run_json


def test_node_postgres_params_big_rows_cancel_and_error_codes(target, appdb):
  require_node_modules()
  out = run_json(["node", str(NODE_DIR / "pg_basic.mjs"), target.url(**appdb)])

  assert out["params"] == {"sum": 42, "txt": "héllo ✓", "doc": {"a": [1, 2, {"b": "c"}]},
                           "was_null": True, "num": "12345678901234567890.123"}
  assert out["named"] == [14, 16]
  assert out["bigParam"] == {"len": 5 * 1024 * 1024, "md5Matches": True}
  assert out["bigRow"]["len"] == 5 * 1024 * 1024
  assert out["bigRow"]["sha"] == out["bigRow"]["expectedSha"]

  assert out["error"]["code"] == "42P01"
  assert out["error"]["message"] == 'relation "no_such_table_node" does not exist'
  assert out["error"]["position"] == "15"
  assert out["divisionError"]["code"] == "22012"
  assert out["afterError"] == "ok"

  assert out["cancel"]["code"] == "57014", out["cancel"]
  assert out["cancel"]["message"] == "canceling statement due to user request"
  assert out["cancel"]["elapsedMs"] < 1500
  assert out["afterCancel"] == 42
  assert out["cancelBackend"]["code"] == "57014"

  assert out["transaction"] == {"inTx": 10, "afterRollback": "42P01"}
