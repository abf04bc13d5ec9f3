# Configuration: the INI file, the environment and flags (flag > env > file), --check-config,
# --admin-url-file, and SIGHUP reloading the file and the desired schema without dropping anyone.
import os
import signal
import subprocess
import time

import pytest

from conftest import client_env, free_port, pgguard_binary, wait_port
from guard_fixtures import REPLAY_SCHEMA, make_db, metric, wait_metric, wait_ready

DESIRED = REPLAY_SCHEMA.read_text()


def run_pgguard(*args, env=None, timeout=10):
  penv = client_env()
  penv.update(env or {})
  return subprocess.run([pgguard_binary()] + list(args), capture_output=True, text=True,
                        timeout=timeout, env=penv)


def test_unknown_config_key_names_key_file_and_line(tmp_path):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("; comment\n[pgguard]\nlisten = 127.0.0.1:6432\nlistne = 127.0.0.1:1\n")
  r = run_pgguard("-c", str(ini), "--check-config")
  assert r.returncode == 2
  assert 'unknown key "listne"' in r.stderr
  assert "%s line 4" % ini in r.stderr


def test_bad_config_value_names_key_file_and_line(tmp_path):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nrepair = sometimes\n")
  r = run_pgguard("-c", str(ini), "--check-config")
  assert r.returncode == 2
  assert '"repair"' in r.stderr and "line 2" in r.stderr and "on-error, eager or off" in r.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e999"])
def test_durations_refuse_nan_infinity_and_negatives(value):
  r = run_pgguard("--shutdown-timeout", value, "--check-config")
  assert r.returncode == 2, r
  assert "invalid value for --shutdown-timeout" in r.stderr, r.stderr


def test_unknown_section_is_an_error(tmp_path):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgbouncer]\nlisten_port = 6432\n")
  r = run_pgguard("-c", str(ini), "--check-config")
  assert r.returncode == 2
  assert "unknown section [pgbouncer]" in r.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
  r = run_pgguard("-c", str(tmp_path / "nope.ini"), "--check-config")
  assert r.returncode == 2
  assert "cannot read config file" in r.stderr and "nope.ini" in r.stderr


def test_check_config_accepts_a_good_file(tmp_path, pg):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nlisten = 127.0.0.1:%d\nupstream = %s:%d\nlog_level = warn\nstrict = false\n"
                 % (free_port(), pg.host, pg.port))
  r = run_pgguard("-c", str(ini), "--check-config")
  assert r.returncode == 0, r.stderr
  assert "configuration OK" in r.stdout


def test_check_config_rejects_an_unreadable_tls_certificate(tmp_path):
  r = run_pgguard("--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(tmp_path / "k"),
                  "--check-config")
  assert r.returncode == 2
  assert "missing.crt" in r.stderr


def listening_port(ports, proc, timeout=10):
  """Which of ports the process listens on (the first to accept)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    for p in ports:
      if wait_port("127.0.0.1", p, 0.05):
        return p
  return None


def test_flag_beats_environment_beats_file(tmp_path, pg):
  file_port, env_port, flag_port = free_port(), free_port(), free_port()
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nlisten = 127.0.0.1:%d\nupstream = %s:%d\nadmin_listen = 127.0.0.1:0\n"
                 % (file_port, pg.host, pg.port))
  cases = [
    ([], {}, file_port),
    ([], {"PGGUARD_LISTEN": "127.0.0.1:%d" % env_port}, env_port),
    (["--listen", "127.0.0.1:%d" % flag_port], {"PGGUARD_LISTEN": "127.0.0.1:%d" % env_port}, flag_port),
  ]
  for flags, env, want in cases:
    penv = client_env()
    penv.update(env)
    proc = subprocess.Popen([pgguard_binary(), "-c", str(ini)] + flags, env=penv,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
      assert listening_port([file_port, env_port, flag_port], proc) == want, (flags, env)
    finally:
      proc.send_signal(signal.SIGTERM)
      proc.wait(timeout=15)
    assert proc.returncode == 0


def test_admin_url_from_a_file_keeps_the_password_out_of_the_process_list(tmp_path, pg, pgguard):
  make_db(pg, "cfg_secret", DESIRED)
  secret = tmp_path / "admin-url"
  secret.write_text(pg.url(dbname="cfg_secret") + "\n")
  r = run_pgguard("check", "--schema", str(REPLAY_SCHEMA), "--admin-url-file", str(secret))
  assert r.returncode == 0, r.stderr + r.stdout
  g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url-file", str(secret))
  with open("/proc/%d/cmdline" % g.pid, "rb") as f:
    cmdline = f.read().decode()
  assert pg.password not in cmdline
  assert wait_metric(g, "pgguard_schema_guard_active", 1) == 1


def test_admin_url_file_that_does_not_exist_is_a_clear_error(tmp_path):
  r = run_pgguard("--admin-url-file", str(tmp_path / "absent"))
  assert r.returncode == 2
  assert "cannot read --admin-url-file" in r.stderr and "absent" in r.stderr


def test_sighup_reloads_the_schema_and_keeps_sessions(tmp_path, pg, pgguard):
  make_db(pg, "cfg_reload", DESIRED)
  first = tmp_path / "first.sql"
  first.write_text(DESIRED)
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nschema = %s\n" % first)
  # The schema comes from the file alone (a --schema flag would win over it on reload too).
  g = pgguard("-c", str(ini), "--admin-url", pg.url(dbname="cfg_reload"), "--drift-interval", "60")
  g.defaults = {"user": "guard_app", "password": "guard-app-pw", "dbname": "cfg_reload"}
  wait_ready(g)
  assert metric(g, "pgguard_schema_drift_objects", kind="table", state="missing") == 0

  conn = g.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT pg_backend_pid()")
    pid_before = cur.fetchone()[0]

  second = tmp_path / "second.sql"
  second.write_text(DESIRED + '\nCREATE TABLE "added_later" ("id" INTEGER NOT NULL);\n')
  ini.write_text("[pgguard]\nschema = %s\n" % second)
  os.kill(g.pid, signal.SIGHUP)
  assert wait_metric(g, "pgguard_schema_drift_objects", 1, kind="table", state="missing",
                     timeout=20) == 1
  g.wait_log(r"event=reloaded")

  with conn.cursor() as cur:
    cur.execute("SELECT pg_backend_pid()")
    assert cur.fetchone()[0] == pid_before
  conn.close()
  assert g.returncode is None


def test_sighup_with_a_broken_file_keeps_the_old_configuration(tmp_path, pg, pgguard):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nlog_level = info\n")
  g = pgguard("-c", str(ini))
  ini.write_text("[pgguard]\nlog_level = chatty\n")
  os.kill(g.pid, signal.SIGHUP)
  g.wait_log(r"event=reload_failed")
  conn = g.connect(user=pg.superuser, password=pg.password, dbname="postgres")
  with conn.cursor() as cur:
    cur.execute("SELECT 1")
    assert cur.fetchone()[0] == 1
  conn.close()
  assert g.returncode is None
