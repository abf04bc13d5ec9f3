# Replay torture (tests/integration/torture.py) inside the suite: about a minute of seeded,
# randomized requests through two pgguard processes while the guarded objects are dropped
# underneath, checked against a ledger. Any violation fails the test; the output names the
# seed, the violating requests and the command line that reruns it.
# TORTURE_SEED=N picks the seed, TORTURE_SECONDS=S the length of the run through pgguard.
import io
import os
import random

import pytest

import torture


def _seed():
  env = os.environ.get("TORTURE_SEED")
  return int(env) if env else random.SystemRandom().randrange(1, 2**31)


def _run(pg, pgguard, tmp_path, seconds, direct):
  seed = _seed()
  out = io.StringIO()

  class Tee:
    def write(self, s):
      out.write(s)
      print(s, end="")

    def flush(self):
      pass

  t = torture.run_torture(pg, lambda args: pgguard(*args), tmp_path, seed, seconds,
                          direct=direct, out=Tee(),
                          rerun=torture.rerun_command(seed, seconds, 0, direct))
  return t, out.getvalue()


def test_torture_model_holds_against_postgres_alone(pg, pgguard, tmp_path):
  """The control: the same clients straight to PostgreSQL (a timer repairs instead of
  pgguard). The ledger model must find nothing; a violation here is a bug of the test."""
  t, text = _run(pg, pgguard, tmp_path, 6, direct=True)
  assert t.total_requests > 100, text
  assert not t.violations, text


@pytest.mark.slow
def test_torture_through_two_pgguards(pg, pgguard, tmp_path):
  seconds = float(os.environ.get("TORTURE_SECONDS", "50"))
  t, text = _run(pg, pgguard, tmp_path, seconds, direct=False)
  for i, g in enumerate(t.guards + t.crashed):
    print("---- pgguard %d log tail (%s)\n%s" % (i, g.logpath, g.log[-2000:]))
  assert not t.violations, "%d violation(s); seed %s\n%s" % (len(t.violations), t.seed, text[-20000:])
  assert t.total_requests > 200, text
