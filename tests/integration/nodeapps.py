# Helpers for the tests that drive the Node.js client programs in tests/node.
import hashlib
import json
import os

import pytest

from conftest import NODE_DIR, client_env, run


def require_node_modules():
  if not (NODE_DIR / "node_modules" / "pg").is_dir():
    pytest.fail("tests/node/node_modules is missing: run scripts/install-deps.sh (npm ci)")


def run_json(cmd, timeout=60, env=None):
  """Runs a client program that prints one JSON object on its last stdout line."""
  r = run(cmd, timeout=timeout, cwd=str(NODE_DIR), env=env or node_env())
  out = r.stdout.decode("utf-8", "replace").strip()
  err = r.stderr.decode("utf-8", "replace")
  if not out:
    raise AssertionError("%s printed nothing (exit %d); stderr:\n%s" % (cmd, r.returncode, err[-4000:]))
  try:
    data = json.loads(out.splitlines()[-1])
  except ValueError:
    raise AssertionError("%s printed no JSON (exit %d):\n%s\nstderr:\n%s"
                         % (cmd, r.returncode, out[-4000:], err[-4000:]))
  if "fatal" in data or r.returncode != 0:
    raise AssertionError("%s failed (exit %d): %s\nstderr:\n%s"
                         % (cmd, r.returncode, data.get("fatal"), err[-4000:]))
  return data


def node_env():
  # No update checks or telemetry: the tests run offline.
  return client_env(CHECKPOINT_DISABLE="1", PRISMA_HIDE_UPDATE_MESSAGE="1", NO_UPDATE_NOTIFIER="1",
                    npm_config_update_notifier="false")


def prisma_generate():
  """Generates the Prisma client once per schema/lockfile content (cached by a stamp file)."""
  require_node_modules()
  h = hashlib.sha256()
  for name in ("prisma/schema.prisma", "prisma.config.ts", "package-lock.json"):
    h.update((NODE_DIR / name).read_bytes())
  stamp = NODE_DIR / "generated" / ".stamp"
  if stamp.exists() and stamp.read_text() == h.hexdigest() and \
     (NODE_DIR / "generated" / "prisma" / "client.ts").exists():
    return
  # The CLI looks for its native schema engine at start-up and would try to download it;
  # generate itself only uses wasm, so any file will do.
  stub = NODE_DIR / "generated" / "schema-engine-stub"
  stub.parent.mkdir(exist_ok=True)
  stub.write_text("#!/bin/sh\nexit 1\n")
  os.chmod(stub, 0o755)
  env = node_env()
  env["PRISMA_SCHEMA_ENGINE_BINARY"] = str(stub)
  r = run([str(NODE_DIR / "node_modules" / ".bin" / "prisma"), "generate"], timeout=180,
          cwd=str(NODE_DIR), env=env)
  if r.returncode != 0:
    raise AssertionError("prisma generate failed:\n%s\n%s" % (r.stdout.decode(), r.stderr.decode()))
  stamp.write_text(h.hexdigest())
