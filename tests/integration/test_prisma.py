# A Prisma 7 application (driver adapter @prisma/adapter-pg) doing CRUD, a nested write and
# interactive transactions through pgguard.
import secrets

import pytest

from conftest import NODE_DIR
from nodeapps import prisma_generate, run_json


@pytest.fixture(scope="module")
def prisma_db(pg):
  """A database owned by the Prisma application's role, with the schema applied as SQL."""
  prisma_generate()
  password = "prisma-" + secrets.token_hex(6)
  pg.create_role("prisma_app", password)
  pg.create_db("prisma_app", owner="prisma_app")
  schema = (NODE_DIR / "prisma" / "schema.sql").read_text()
  pg.sql(schema, db="prisma_app", user="prisma_app", password=password)
  return {"user": "prisma_app", "password": password, "dbname": "prisma_app"}


def test_prisma_crud_nested_write_and_transactions(target, prisma_db):
  tsx = str(NODE_DIR / "node_modules" / ".bin" / "tsx")
  out = run_json([tsx, str(NODE_DIR / "prisma_app.ts"), target.url(**prisma_db)], timeout=90)

  assert out["created"] == {"idIsNumber": True, "name": "Alice"}
  assert out["read"] == {"email": True, "name": "Alice"}
  assert out["updated"] == {"name": "Alice B."}
  assert out["nested"] == {"titles": ["first", "second"], "count": 2}
  assert out["rollback"] == {"rolledBack": True, "carolExists": False}
  assert out["duplicate"] == {"code": "P2002"}
  assert out["relation"] == {"posts": 2}
  assert out["deleted"] == {"remaining": 0}
