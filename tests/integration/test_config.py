# Configuration: the INI file, the environment and flags (flag > env > file), --check-config,
# --admin-url-file, SIGHUP reloading the file and the desired schema without dropping anyone, and
# the README's option table agreeing with the one --help prints.
import os
import re
import signal
import subprocess
import time

import psycopg2
import pytest

from conftest import (SANITIZER_PATTERNS, SOURCE, Pgguard, client_env, free_port, pgguard_binary,
                      wait_port)
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


DURATIONS = ["shutdown-timeout", "client-login-timeout", "server-connect-timeout", "dns-ttl",
             "repair-wait", "drift-interval", "repair-cooldown"]


@pytest.mark.parametrize("option", DURATIONS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e999", "soon", "5s", ""])
def test_durations_refuse_nan_infinity_negatives_and_garbage(option, value):
  r = run_pgguard("--" + option, value, "--check-config")
  assert r.returncode == 2, r
  assert "invalid value for --%s" % option in r.stderr, r.stderr
  assert "seconds" in r.stderr, r.stderr


@pytest.mark.parametrize("option", DURATIONS)
def test_durations_from_the_environment_and_the_file_are_checked_alike(option, tmp_path):
  env = "PGGUARD_" + option.upper().replace("-", "_")
  r = run_pgguard("--check-config", env={env: "nan"})
  assert r.returncode == 2 and "invalid value for %s" % env in r.stderr, r.stderr
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\n%s = -5\n" % option.replace("-", "_"))
  r = run_pgguard("-c", str(ini), "--check-config")
  assert r.returncode == 2 and "%s line 2" % ini in r.stderr and "seconds" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["0", "2.5", "15"])
def test_dns_ttl_takes_zero_and_fractions(value):
  r = run_pgguard("--dns-ttl", value, "--check-config")
  assert r.returncode == 0, r.stderr


def test_command_line_only_options_are_refused_in_the_file(tmp_path):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nfail_on = extra\n")
  r = run_pgguard("-c", str(ini), "--check-config")
  assert r.returncode == 2
  assert '"fail_on" is a command-line option' in r.stderr and "line 2" in r.stderr, r.stderr


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


def test_sighup_applies_reloadable_settings_and_logs_each_restart_only_one(tmp_path, pg):
  port, other_port = free_port(), free_port()
  ini = tmp_path / "pgguard.ini"
  def write(listen_port, max_client_conn, statement_timeout):
    ini.write_text("[pgguard]\nlisten = 127.0.0.1:%d\nupstream = %s:%d\nadmin_listen = 127.0.0.1:0\n"
                   "max_client_conn = %d\nstatement_timeout = %d\n"
                   % (listen_port, pg.host, pg.port, max_client_conn, statement_timeout))
  write(port, 1, 30000)
  logpath = tmp_path / "pgguard.log"
  argv = [pgguard_binary(), "-c", str(ini), "--shutdown-timeout", "2"]
  with open(logpath, "wb") as logf:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            env=client_env())
  # No SSLRequest: pgguard's FATAL then reaches psycopg2 as PostgreSQL's own message.
  g = Pgguard(proc, argv, port, 0, logpath, dict(pg.defaults, sslmode="disable"))
  try:
    assert wait_port("127.0.0.1", port, 10, proc), g.log
    # wait_port's own connection counts until pgguard has seen it close.
    deadline = time.monotonic() + 5
    while True:
      try:
        first = g.connect()
        break
      except psycopg2.OperationalError:
        if time.monotonic() > deadline:
          raise
        time.sleep(0.05)
    with pytest.raises(psycopg2.OperationalError, match="too many clients"):
      g.connect()

    write(other_port, 2, 1000)
    os.kill(g.pid, signal.SIGHUP)
    g.wait_log(r"event=reloaded")
    # The reloadable one applies: a second client now fits.
    second = g.connect()
    with second.cursor() as cur:
      cur.execute("SELECT 1")
      assert cur.fetchone()[0] == 1
    assert re.search(r"event=reload_applied option=max-client-conn\b", g.log), g.log
    assert re.search(r"event=reload_applied option=statement-timeout\b", g.log), g.log
    # The restart-only one is named once, and keeps its old value.
    assert len(re.findall(r"event=reload_needs_restart option=listen\b", g.log)) == 1, g.log
    assert len(re.findall(r"event=reload_needs_restart", g.log)) == 1, g.log
    assert not wait_port("127.0.0.1", other_port, 0.3)
    first.close()
    second.close()
  finally:
    assert g.stop() == 0, g.log
  assert not SANITIZER_PATTERNS.search(g.log), g.log


def test_sighup_does_not_turn_the_guard_on(tmp_path, pg, pgguard):
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\nlog_level = info\n")
  g = pgguard("-c", str(ini))
  ini.write_text("[pgguard]\nschema = %s\nadmin_url = %s\n" % (REPLAY_SCHEMA, pg.url()))
  os.kill(g.pid, signal.SIGHUP)
  g.wait_log(r"event=reloaded")
  assert re.search(r"event=reload_needs_restart option=schema reason=.*guard on", g.log), g.log
  assert not re.search(r"event=reload_applied option=schema", g.log), g.log
  assert not re.search(r"event=schema_reload", g.log), g.log
  assert g.returncode is None


# --- the README's option table ----------------------------------------------------------

HELP_OPTION = re.compile(r"^  (?:-[a-z], )?--([a-z][a-z-]*)")
HELP_FACTS = re.compile(r"^ +\((?:default (?P<default>[^;]*); )?"
                        r"(?P<reload>reload|restart|command line only)(?:; (?P<env>PGGUARD_\w+))?\)$")
README_RELOAD = {"yes": "reload", "restart": "restart", "\u2014": "command line only"}


def help_options():
  """{option: (default or None, reload, env or None)} from the last line of each --help entry."""
  r = run_pgguard("--help")
  assert r.returncode == 0, r.stderr
  options, current = {}, None
  for line in r.stdout.splitlines():
    m = HELP_OPTION.match(line)
    if m:
      current = m.group(1)
      continue
    m = HELP_FACTS.match(line)
    if m and current:
      options[current] = (m.group("default"), m.group("reload"), m.group("env"))
      current = None
  return options, r.stdout


def readme_options():
  """{option: (default, reload, env, pgbouncer)} from the README's configuration table."""
  lines = (SOURCE / "README.md").read_text().splitlines()
  head = [i for i, l in enumerate(lines) if re.match(r"\| option \| env \| default \| reload \|", l)]
  assert len(head) == 1, "the README needs one option table"
  options = {}
  for line in lines[head[0] + 2:]:
    if not line.startswith("|"):
      break
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    assert len(cells) == 6, line
    names = re.findall(r"--([a-z][a-z-]*)", cells[0])
    assert names, line
    plain = [c.replace("`", "") for c in cells]
    env = None if plain[1] == "\u2014" else plain[1]
    default = None if plain[2] == "\u2014" else plain[2]
    assert plain[3] in README_RELOAD, line
    assert names[-1] not in options, "%s is twice in the README table" % names[-1]
    options[names[-1]] = (default, README_RELOAD[plain[3]], env, plain[4])
  return options


def test_readme_option_table_lists_every_option_as_help_prints_it():
  helped, text = help_options()
  documented = readme_options()
  assert len(helped) >= 40, text
  assert sorted(set(helped) - set(documented)) == [], "options missing from the README table"
  assert sorted(set(documented) - set(helped)) == [], "README options that --help does not know"
  for name, (default, reload, env) in helped.items():
    want = documented[name][:3]
    assert (default, reload, env) == want, "--%s: --help says %r, the README %r" % (
      name, (default, reload, env), want)
    assert documented[name][3], "--%s: no PgBouncer column" % name
