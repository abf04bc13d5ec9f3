# The deployment files (deploy/, Dockerfile) agree with each other and with pgguard: they parse,
# the Kubernetes sidecar is probed, scraped and configured where pgguard really listens, the
# systemd unit passes systemd-analyze, and the Dockerfile's stages build and run pgguard.
import configparser
import json
import re
import shlex
import shutil
import subprocess
import urllib.parse

import pytest
import yaml

from conftest import (SANITIZER_PATTERNS, SOURCE, Pgguard, client_env, free_port, is_sanitized,
                      pgguard_binary, run, wait_port)
from guard_fixtures import REPLAY_SCHEMA, app_kw, make_db, wait_ready

DEPLOY = SOURCE / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = SOURCE / "Dockerfile"
DASHBOARD = DEPLOY / "grafana" / "pgguard-dashboard.json"
INI_FILES = [K8S / "pgguard.ini", SYSTEMD / "pgguard.ini"]


def yaml_docs(path):
  return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def read_ini(path):
  cp = configparser.ConfigParser(interpolation=None)
  cp.read_string(path.read_text(), source=str(path))
  return cp


def host_port(value):
  host, _, port = value.rpartition(":")
  return host, int(port)


def help_flags():
  r = run([pgguard_binary(), "--help"], timeout=10)
  text = (r.stdout + r.stderr).decode()
  return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b", text)), text


# --- YAML and JSON -------------------------------------------------------------------

def test_every_yaml_file_under_deploy_parses():
  files = sorted(p for ext in ("*.yml", "*.yaml") for p in DEPLOY.rglob(ext))
  assert len(files) >= 7, files
  for path in files:
    docs = yaml_docs(path)
    assert docs, "%s holds no YAML document" % path
    assert all(isinstance(d, dict) for d in docs), path


def test_grafana_dashboard_is_a_dashboard_with_a_prometheus_datasource_variable():
  dash = json.loads(DASHBOARD.read_text())
  assert 36 <= dash["schemaVersion"] <= 41
  assert dash["uid"] and dash["title"] and dash.get("id") is None
  variables = {v["name"]: v for v in dash["templating"]["list"]}
  ds = variables["datasource"]
  assert ds["type"] == "datasource" and ds["query"] == "prometheus"
  ids = [p["id"] for p in dash["panels"]]
  assert len(ids) == len(set(ids)), ids
  cells = {}
  kinds = set()
  for p in dash["panels"]:
    g = p["gridPos"]
    assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (p["title"], g)
    for x in range(g["x"], g["x"] + g["w"]):
      for y in range(g["y"], g["y"] + g["h"]):
        assert (x, y) not in cells, "%r overlaps %r" % (p["title"], cells[(x, y)])
        cells[(x, y)] = p["title"]
    if p["type"] == "row":
      continue
    kinds.add(p["type"])
    assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    assert p["targets"], p["title"]
    refs = [t["refId"] for t in p["targets"]]
    assert len(refs) == len(set(refs)), p["title"]
    for t in p["targets"]:
      assert t["datasource"]["uid"] == "${datasource}", p["title"]
      assert "pgguard_" in t["expr"], p["title"]
  assert {"stat", "timeseries"} <= kinds
  titles = " | ".join(p["title"].lower() for p in dash["panels"])
  for word in ("missing", "extra", "repairs", "repair duration", "replays", "sqlstate",
               "connections", "bytes", "latency", "upstream"):
    assert word in titles, "no panel about %r: %s" % (word, titles)


# --- Kubernetes --------------------------------------------------------------------

def k8s_objects():
  objs = []
  for path in sorted(K8S.glob("*.yaml")):
    objs += [(path.name, d) for d in yaml_docs(path)]
  return objs


def deployment():
  deps = [d for _, d in k8s_objects() if d.get("kind") == "Deployment"]
  assert len(deps) == 1, deps
  return deps[0]


def sidecar_and_app(pod):
  containers = pod.get("initContainers", []) + pod["containers"]
  sidecar = [c for c in containers if c["name"] == "pgguard"]
  assert len(sidecar) == 1, [c["name"] for c in containers]
  apps = [c for c in pod["containers"] if c["name"] != "pgguard"]
  assert apps, "no application container"
  return sidecar[0], apps


def mounted_file(pod, container, path):
  """(volume, key) that provides the file at path inside container."""
  volumes = {v["name"]: v for v in pod["volumes"]}
  for m in container["volumeMounts"]:
    prefix = m["mountPath"].rstrip("/") + "/"
    if path.startswith(prefix):
      return volumes[m["name"]], path[len(prefix):]
  raise AssertionError("%s is on no volume mounted in %s" % (path, container["name"]))


def test_kubernetes_sidecar_is_probed_and_scraped_on_its_admin_port():
  dep = deployment()
  tmpl = dep["spec"]["template"]
  pod = tmpl["spec"]
  sidecar, _ = sidecar_and_app(pod)
  ini = read_ini(K8S / "pgguard.ini")["pgguard"]
  admin_host, admin_port = host_port(ini["admin_listen"])
  # The kubelet and Prometheus connect to the pod IP, not to loopback.
  assert admin_host == "0.0.0.0", ini["admin_listen"]
  assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": admin_port}
  assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": admin_port}
  assert admin_port in [p["containerPort"] for p in sidecar["ports"]]
  ann = tmpl["metadata"]["annotations"]
  assert ann["prometheus.io/scrape"] == "true"
  assert ann["prometheus.io/port"] == str(admin_port)
  assert ann["prometheus.io/path"] == "/metrics"
  if sidecar in pod.get("initContainers", []):
    assert sidecar["restartPolicy"] == "Always", "an init container that is not a sidecar"
  # Longer than pgguard's own grace period for running requests.
  assert pod["terminationGracePeriodSeconds"] > int(ini["shutdown_timeout"])


def test_kubernetes_sidecar_reads_its_config_schema_and_admin_url_from_mounted_files():
  pod = deployment()["spec"]["template"]["spec"]
  sidecar, apps = sidecar_and_app(pod)
  args = sidecar["args"]
  assert args[:2] == ["-c", "/etc/pgguard/pgguard.ini"], args
  vol, key = mounted_file(pod, sidecar, args[1])
  assert key == "pgguard.ini" and vol["configMap"]["name"] == "pgguard-config", vol
  kust = yaml_docs(K8S / "kustomization.yaml")[0]
  generated = {g["name"]: g["files"] for g in kust["configMapGenerator"]}
  assert "pgguard.ini" in generated["pgguard-config"]
  for res in kust["resources"]:
    assert (K8S / res).is_file(), res

  ini = read_ini(K8S / "pgguard.ini")["pgguard"]
  vol, key = mounted_file(pod, sidecar, ini["schema"])
  assert key in generated[vol["configMap"]["name"]], (vol, key)
  assert (K8S / key).read_text().strip()
  vol, key = mounted_file(pod, sidecar, ini["admin_url_file"])
  secrets = {d["metadata"]["name"]: d for _, d in k8s_objects() if d.get("kind") == "Secret"}
  assert key in secrets[vol["secret"]["secretName"]]["stringData"], (vol, key)
  assert "admin_url" not in ini, "the admin URL belongs in the Secret, not the ConfigMap"
  assert "PGGUARD_ADMIN_URL" not in json.dumps(sidecar.get("env", []))

  # The application connects to the sidecar's Unix socket, in a volume both mount.
  env = {e["name"]: e for e in apps[0]["env"]}
  url = urllib.parse.urlsplit(env["DATABASE_URL"]["value"])
  assert url.scheme in ("postgresql", "postgres")
  query = dict(urllib.parse.parse_qsl(url.query))
  sockdir, port = ini["listen"].rsplit(":", 1)
  assert (query["host"], query["port"]) == (sockdir, port) == ("/var/run/pgguard", "6432")
  vols = {v["name"]: v for v in pod["volumes"]}
  def mount_of(c):
    return [m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == sockdir]
  shared = mount_of(sidecar)
  assert shared and shared == mount_of(apps[0]), "both containers mount the socket directory"
  assert "emptyDir" in vols[shared[0]]
  # $(DB_PASSWORD) is expanded only from a variable defined before it.
  names = [e["name"] for e in apps[0]["env"]]
  for ref in re.findall(r"\$\((\w+)\)", env["DATABASE_URL"]["value"]):
    assert names.index(ref) < names.index("DATABASE_URL"), ref


def test_kubernetes_containers_are_unprivileged_and_bounded():
  pod = deployment()["spec"]["template"]["spec"]
  sidecar, apps = sidecar_and_app(pod)
  assert pod["securityContext"]["runAsNonRoot"] is True
  assert pod["securityContext"]["runAsUser"] == dockerfile_user_uid()
  for c in [sidecar] + apps:
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True, c["name"]
    assert sc["allowPrivilegeEscalation"] is False, c["name"]
    assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
    assert sc.get("runAsNonRoot", pod["securityContext"]["runAsNonRoot"]) is True
    for kind in ("requests", "limits"):
      assert {"cpu", "memory"} <= set(c["resources"][kind]), (c["name"], kind)


def test_kustomize_builds_the_deployment_with_the_generated_config_maps(tmp_path):
  kubectl = shutil.which("kubectl")
  if not kubectl:
    pytest.skip("kubectl is not installed (it is not a Debian package)")
  r = run([kubectl, "kustomize", str(K8S)], timeout=60)
  assert r.returncode == 0, r.stderr.decode()
  docs = [d for d in yaml.safe_load_all(r.stdout.decode()) if d]
  maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
  ini_map = [m for n, m in maps.items() if n.startswith("pgguard-config-")]
  assert len(ini_map) == 1, list(maps)
  assert ini_map[0]["data"]["pgguard.ini"] == (K8S / "pgguard.ini").read_text()
  dep = [d for d in docs if d["kind"] == "Deployment"][0]
  names = {v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
  assert names == set(maps), (names, list(maps))


# --- pgguard.ini -----------------------------------------------------------------------

@pytest.mark.parametrize("path", INI_FILES, ids=lambda p: p.parent.name)
def test_ini_keys_are_pgguard_flags(path):
  cp = read_ini(path)
  assert cp.sections() == ["pgguard"], cp.sections()
  flags, text = help_flags()
  assert "-c" in flags or "--config" in flags, "pgguard --help names no -c option:\n" + text
  unknown = ["%s (--%s)" % (k, k.replace("_", "-")) for k in cp["pgguard"]
             if "--" + k.replace("_", "-") not in flags]
  assert not unknown, "keys that are no pgguard flag: %s\n%s" % (unknown, text)
  for key in ("listen", "admin_listen", "upstream"):
    host, port = host_port(cp["pgguard"][key])
    assert host and 0 < port < 65536, key


@pytest.mark.parametrize("path", INI_FILES, ids=lambda p: p.parent.name)
def test_check_config_accepts_the_ini_with_only_host_paths_replaced(path, tmp_path):
  # The shipped files name paths and hosts of the target system; point those at local ones.
  admin_url = tmp_path / "admin-url"
  admin_url.write_text("postgresql://pgguard_admin:secret@127.0.0.1:5432/shop\n")
  cp = read_ini(path)
  sec = cp["pgguard"]
  _, upstream_port = host_port(sec["upstream"])
  sec.update({"schema": str(REPLAY_SCHEMA), "admin_url_file": str(admin_url),
              "upstream": "127.0.0.1:%d" % upstream_port})
  if sec["listen"].startswith("/"):   # a socket directory of the target system
    sec["listen"] = "%s:%s" % (tmp_path, sec["listen"].rsplit(":", 1)[1])
  ini = tmp_path / "pgguard.ini"
  with open(ini, "w") as f:
    cp.write(f)
  r = run([pgguard_binary(), "--check-config", "-c", str(ini)], timeout=30, env=client_env())
  out = (r.stdout + r.stderr).decode()
  assert r.returncode == 0 and "configuration OK" in out, out
  assert "secret" not in out
  # and a wrong value in the same file is refused: the check reads the file.
  sec["drift_interval"] = "soon"
  with open(ini, "w") as f:
    cp.write(f)
  r = run([pgguard_binary(), "--check-config", "-c", str(ini)], timeout=30, env=client_env())
  assert r.returncode != 0 and "drift" in (r.stdout + r.stderr).decode(), r


def test_pgguard_runs_the_kubernetes_ini_with_only_paths_and_addresses_changed(pg, tmp_path):
  # pgguard started with nothing but -c: every other setting comes from the shipped file.
  make_db(pg, "deploy_ini", REPLAY_SCHEMA.read_text(), ['DROP TABLE "widgets"'])
  admin_url = tmp_path / "admin-url"
  admin_url.write_text(pg.url(dbname="deploy_ini") + "\n")
  admin_url.chmod(0o600)
  port, admin_port = free_port(), free_port()
  cp = read_ini(K8S / "pgguard.ini")
  cp["pgguard"].update({"listen": "127.0.0.1:%d" % port, "admin_listen": "127.0.0.1:%d" % admin_port,
                        "upstream": "%s:%d" % (pg.host, pg.port), "upstream_sslmode": "disable",
                        "schema": str(REPLAY_SCHEMA), "admin_url_file": str(admin_url),
                        "shutdown_timeout": "2"})
  ini = tmp_path / "pgguard.ini"
  with open(ini, "w") as f:
    cp.write(f)
  argv = [pgguard_binary(), "-c", str(ini)]
  logpath = tmp_path / "pgguard.log"
  with open(logpath, "wb") as logf:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            env=client_env(), cwd=str(tmp_path))
  g = Pgguard(proc, argv, port, admin_port, logpath, app_kw("deploy_ini"))
  try:
    assert wait_port("127.0.0.1", port, 10, proc), "pgguard -c did not listen on %d (exit %r):\n%s" \
      % (port, proc.poll(), g.log[-3000:])
    wait_ready(g)
    m = g.metrics()
    assert m.get_value("pgguard_schema_guard_active") == 1
    assert m.get_value("pgguard_schema_drift_objects", kind="table", state="missing") == 1
    conn = g.connect()
    try:
      with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM widgets")  # repaired and replayed
        assert cur.fetchone()[0] == 0
    finally:
      conn.close()
    assert pg.password not in g.log, "admin password in the log"
  finally:
    assert g.stop() == 0, g.log[-3000:]
  assert not SANITIZER_PATTERNS.search(g.log), g.log[-6000:]


# --- systemd -------------------------------------------------------------------------

def unit_entries(path):
  """[(section, key, value)] of a unit file; systemd allows a key more than once."""
  out = []
  section = None
  for line in path.read_text().splitlines():
    line = line.strip()
    if not line or line[0] in "#;":
      continue
    if line.startswith("["):
      section = line.strip("[]")
      continue
    key, _, value = line.partition("=")
    out.append((section, key.strip(), value.strip()))
  return out


def unit_values(path, section, key):
  return [v for s, k, v in unit_entries(path) if s == section and k == key]


def test_systemd_unit_starts_with_the_ini_reloads_with_hup_and_is_hardened():
  unit = SYSTEMD / "pgguard.service"
  exec_start = shlex.split(unit_values(unit, "Service", "ExecStart")[0])
  assert exec_start[0].endswith("/pgguard") and exec_start[1:] == ["-c", "/etc/pgguard/pgguard.ini"]
  assert unit_values(unit, "Service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]
  assert unit_values(unit, "Service", "DynamicUser") == ["yes"] or \
    unit_values(unit, "Service", "User") not in ([], ["root"])
  for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                     ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")]:
    assert unit_values(unit, "Service", key) == [value], key
  ini = read_ini(SYSTEMD / "pgguard.ini")["pgguard"]
  # The admin URL arrives as a systemd credential, readable by the service user alone.
  cred = unit_values(unit, "Service", "LoadCredential")[0].split(":")[0]
  assert ini["admin_url_file"] == "/run/credentials/pgguard.service/" + cred
  stop = unit_values(unit, "Service", "TimeoutStopSec")[0]
  assert int(stop.rstrip("s")) > int(ini["shutdown_timeout"])


def test_systemd_analyze_verifies_the_unit_and_rates_it_well_hardened(tmp_path):
  analyze = shutil.which("systemd-analyze")
  if not analyze:
    pytest.skip("systemd-analyze is not installed (Debian package systemd)")
  # verify wants the ExecStart binary to exist: point it at the one under test.
  text = (SYSTEMD / "pgguard.service").read_text()
  unit = tmp_path / "pgguard.service"
  unit.write_text(re.sub(r"^ExecStart=\S+", "ExecStart=" + pgguard_binary(), text, flags=re.M))
  r = run([analyze, "verify", str(unit)], timeout=60, cwd=str(tmp_path))
  out = (r.stdout + r.stderr).decode()
  assert r.returncode == 0 and not out.strip(), out
  r = run([analyze, "security", "--offline=true", str(unit)], timeout=60, cwd=str(tmp_path))
  out = (r.stdout + r.stderr).decode()
  m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
  assert m, out[-2000:]
  assert float(m.group(1)) <= 2.0, out[-3000:]


# --- Dockerfile -----------------------------------------------------------------------

def dockerfile_stages():
  """[{"from", "name", "instructions": [(INSTR, args)]}] with continuation lines joined."""
  text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
  stages = []
  for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    instr, _, args = line.partition(" ")
    instr = instr.upper()
    args = re.sub(r"\s+", " ", args).strip()
    if instr == "FROM":
      m = re.fullmatch(r"(\S+)(?: AS (\S+))?", args, re.I)
      stages.append({"from": m.group(1), "name": m.group(2), "instructions": []})
    else:
      assert stages, "instruction before FROM: %s" % line
      stages[-1]["instructions"].append((instr, args))
  return stages


def apt_packages(stage):
  pkgs = []
  for instr, args in stage["instructions"]:
    if instr == "RUN":
      for part in re.split(r"&&|;", args):
        words = part.split()
        if words[:2] in (["apt-get", "install"], ["apt", "install"]):
          pkgs += [w for w in words[2:] if not w.startswith("-")]
  return pkgs


def dockerfile_user_uid():
  users = [a for i, a in dockerfile_stages()[-1]["instructions"] if i == "USER"]
  assert users, "the runtime stage has no USER: it would run as root"
  user = users[-1].split(":")[0]
  assert re.fullmatch(r"\d+", user), "USER %s: use the numeric uid (runAsNonRoot checks it)" % user
  return int(user)


def test_dockerfile_runtime_stage_runs_pgguard_as_an_unprivileged_user():
  stages = dockerfile_stages()
  assert len(stages) >= 2, stages
  assert all(s["from"].startswith("debian:12") for s in stages), [s["from"] for s in stages]
  runtime = stages[-1]
  uid = dockerfile_user_uid()
  assert uid != 0
  runs = " ".join(a for i, a in runtime["instructions"] if i == "RUN")
  assert re.search(r"useradd\b[^&;]*--uid %d\b" % uid, runs), runs
  instrs = dict(runtime["instructions"])
  assert set(instrs["EXPOSE"].split()) == {"6432", "9930"}
  entry = json.loads(instrs["ENTRYPOINT"])
  assert entry[0].endswith("/pgguard"), entry
  copied = [a for i, a in runtime["instructions"] if i == "COPY"]
  assert any(a.startswith("--from=%s " % stages[0]["name"]) and a.endswith(" " + entry[0])
             for a in copied), copied
  # Only shared libraries in the runtime image: no compiler, no -dev package (that every
  # library pgguard needs is there is the next test).
  runtime_pkgs = apt_packages(runtime)
  assert {"libuv1", "libpq5", "libssl3"} <= set(runtime_pkgs), runtime_pkgs
  assert all(re.fullmatch(r"lib[a-z0-9.+-]*[0-9]", p) and not p.endswith("-dev")
             for p in runtime_pkgs), runtime_pkgs
  build_pkgs = apt_packages(stages[0])
  assert {"build-essential", "cmake", "pkg-config"} <= set(build_pkgs), build_pkgs
  # Every pkg-config module CMakeLists.txt requires comes from a package the build stage installs.
  modules = re.findall(r"pkg_check_modules\(\w+\s+REQUIRED\s+(?:IMPORTED_TARGET\s+)?([\w.+-]+)\)",
                       (SOURCE / "CMakeLists.txt").read_text())
  assert modules
  for module in modules:
    r = run(["dpkg", "-S", "*/pkgconfig/%s.pc" % module], timeout=30)
    owners = {line.split(":")[0] for line in r.stdout.decode().splitlines()}
    assert owners & set(build_pkgs), "pkg-config module %s (from %s) is not installed by the " \
      "build stage: %s" % (module, sorted(owners), build_pkgs)


def test_dockerfile_runtime_packages_provide_every_library_pgguard_links():
  binary = pgguard_binary()
  r = run(["readelf", "-d", binary], timeout=30, check=True)
  needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout.decode())
  assert needed
  runtime = set(apt_packages(dockerfile_stages()[-1]))
  base = {"libc6", "libgcc-s1"}  # in every debian image
  missing = []
  for lib in needed:
    if is_sanitized(binary) and re.match(r"lib(asan|ubsan|lsan)", lib):
      continue
    r = run(["dpkg", "-S", "*/" + lib], timeout=30)
    owners = {line.split(":")[0] for line in r.stdout.decode().splitlines()}
    assert owners, "no Debian package ships %s" % lib
    if not owners & (runtime | base):
      missing.append("%s (%s)" % (lib, ", ".join(sorted(owners))))
  assert not missing, "runtime stage lacks: %s" % missing


@pytest.mark.slow
def test_dockerfile_build_stage_builds_a_working_pgguard_from_what_it_copies(tmp_path):
  # Replays the build stage without Docker: its COPY lines into an empty directory (the
  # WORKDIR), then its RUN lines other than apt-get (the packages are installed here).
  build = dockerfile_stages()[0]
  src = tmp_path / "src"
  src.mkdir()
  ran = False
  for instr, args in build["instructions"]:
    if instr == "COPY":
      parts = args.split()
      assert not parts[0].startswith("--"), args
      *sources, dest = parts
      for s in sources:
        # Docker's rules: a directory's contents go into dest; a file into dest/ or as dest.
        origin = SOURCE / s.rstrip("/")
        target = src / dest
        if origin.is_dir():
          shutil.copytree(origin, target, dirs_exist_ok=True)
        else:
          target = target / origin.name if dest.endswith("/") else target
          target.parent.mkdir(parents=True, exist_ok=True)
          shutil.copy(origin, target)
    elif instr == "RUN" and "apt-get" not in args:
      r = subprocess.run(["sh", "-ec", args], cwd=str(src), timeout=540, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
      assert r.returncode == 0, r.stdout.decode()[-4000:]
      ran = True
  assert ran, "the build stage has no build step"
  runtime = dockerfile_stages()[-1]
  copy = [a for i, a in runtime["instructions"] if i == "COPY" and a.startswith("--from=")][0]
  built = copy.split()[1]
  workdir = [a for i, a in build["instructions"] if i == "WORKDIR"][-1].rstrip("/")
  assert built.startswith(workdir + "/"), (built, workdir)
  binary = src / built[len(workdir) + 1:]
  r = run([str(binary), "--version"], timeout=10)
  assert r.returncode == 0 and r.stdout.decode().startswith("pgguard "), r
