# TLS fixtures for test_tls.py: certificates made at run time (two CAs; server certificates that
# are good, expired, for another host, from the other CA; one of pgguard's own) and a PostgreSQL 15
# cluster with ssl=on.
import datetime
import os
import shutil
import socket
import ssl
import struct
import tempfile
import time
from pathlib import Path

import pytest

from conftest import OWNER_FILE, Postgres, reap_stale_clusters, run

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
CERT_DAYS = "30"

# Extensions of every server (leaf) certificate; %s is the subjectAltName value.
LEAF_EXT = ("subjectAltName=%s\n"
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n")
LOCALHOST_SAN = "DNS:localhost,IP:127.0.0.1"


class Certs:
  """Paths of the generated files; a certificate NAME has NAME.crt and NAME.key in dir."""

  def __init__(self, d):
    self.dir = Path(d)

  def crt(self, name):
    return str(self.dir / (name + ".crt"))

  def key(self, name):
    return str(self.dir / (name + ".key"))

  def der(self, name):
    return ssl.PEM_cert_to_DER_cert(Path(self.crt(name)).read_text())

  @property
  def ca(self):
    return self.crt("ca")

  @property
  def other_ca(self):
    return self.crt("other_ca")


def _openssl(d, *args):
  r = run(["openssl"] + list(args), timeout=60, cwd=str(d))
  if r.returncode != 0:
    raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))


def _ec_key_args():
  return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _make_ca(d, name, cn):
  _openssl(d, "req", "-x509", *_ec_key_args(), "-keyout", name + ".key", "-out", name + ".crt",
           "-days", CERT_DAYS, "-subj", "/CN=" + cn)


def _make_leaf(d, name, cn, san, ca):
  (Path(d) / (name + ".ext")).write_text(LEAF_EXT % san)
  _openssl(d, "req", "-new", *_ec_key_args(), "-keyout", name + ".key", "-out", name + ".csr",
           "-subj", "/CN=" + cn)
  _openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
           "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", CERT_DAYS,
           "-extfile", name + ".ext", "-out", name + ".crt")


def _make_expired_leaf(d, name, ca):
  """OpenSSL 3.0's x509 command cannot set past dates (no -not_before/-not_after), so this one
  is built with python3-cryptography: valid from 30 days ago until yesterday."""
  from cryptography import x509
  from cryptography.hazmat.primitives import hashes, serialization
  from cryptography.hazmat.primitives.asymmetric import ec
  from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
  import ipaddress

  d = Path(d)
  ca_cert = x509.load_pem_x509_certificate((d / (ca + ".crt")).read_bytes())
  ca_key = serialization.load_pem_private_key((d / (ca + ".key")).read_bytes(), password=None)
  key = ec.generate_private_key(ec.SECP256R1())
  now = datetime.datetime.now(datetime.timezone.utc)
  cert = (x509.CertificateBuilder()
          .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
          .issuer_name(ca_cert.subject)
          .public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=30))
          .not_valid_after(now - datetime.timedelta(days=1))
          .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
          .sign(ca_key, hashes.SHA256()))
  (d / (name + ".crt")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
  (d / (name + ".key")).write_bytes(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_certs(d):
  """ca, other_ca; server (localhost + 127.0.0.1, by ca), pgguard (the same names, by ca, another
  key: pgguard's own certificate, not the server's), otherhost (DNS:otherhost only, by ca),
  expired (localhost, by ca, expired yesterday), foreign (localhost, by other_ca)."""
  _make_ca(d, "ca", "pgguard-test-ca")
  _make_ca(d, "other_ca", "pgguard-other-ca")
  _make_leaf(d, "server", "localhost", LOCALHOST_SAN, "ca")
  _make_leaf(d, "pgguard", "localhost", LOCALHOST_SAN, "ca")
  _make_leaf(d, "otherhost", "otherhost", "DNS:otherhost", "ca")
  _make_leaf(d, "foreign", "localhost", LOCALHOST_SAN, "other_ca")
  _make_expired_leaf(d, "expired", "ca")
  return Certs(d)


def served_cert_der(host, port, timeout=5.0):
  """The certificate PostgreSQL at host:port presents (DER), or None if it declines TLS."""
  with socket.create_connection((host, port), timeout=timeout) as s:
    s.sendall(SSL_REQUEST)
    if s.recv(1) != b"S":
      return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(s) as t:
      return t.getpeercert(binary_form=True)


class TlsPostgres(Postgres):
  """A cluster like conftest's, with ssl=on and every generated certificate in its data directory,
  so that the certificate it serves can be switched with use_cert()."""

  name = "direct-tls"

  def __init__(self, root, certs):
    super().__init__(root)
    self.certs = certs
    self.cert_name = "server"

  def init(self):
    super().init()
    for f in sorted(self.certs.dir.iterdir()):
      if f.suffix not in (".crt", ".key"):
        continue
      dst = self.datadir / f.name
      shutil.copyfile(f, dst)
      os.chmod(dst, 0o600)
      if os.geteuid() == 0:
        shutil.chown(dst, "postgres", "postgres")
    with open(self.datadir / "postgresql.conf", "a") as fh:
      fh.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")

  def use_cert(self, name, timeout=10.0):
    """Makes PostgreSQL serve NAME.crt/NAME.key (reloading its configuration) and waits until
    a new connection is actually offered that certificate."""
    if name == self.cert_name:
      return
    self.sql("ALTER SYSTEM SET ssl_cert_file = %s", (name + ".crt",))
    self.sql("ALTER SYSTEM SET ssl_key_file = %s", (name + ".key",))
    self.sql("SELECT pg_reload_conf()")
    want = self.certs.der(name)
    deadline = time.monotonic() + timeout
    while served_cert_der(self.host, self.port) != want:
      if time.monotonic() > deadline:
        raise AssertionError("PostgreSQL does not serve %s.crt %.0fs after the reload; log:\n%s"
                             % (name, timeout, self.logfile.read_text()[-3000:]))
      time.sleep(0.05)
    self.cert_name = name


@pytest.fixture(scope="module")
def certs():
  d = tempfile.mkdtemp(prefix="pgg-tls-certs-")
  try:
    yield make_certs(d)
  finally:
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_pg(certs):
  """PostgreSQL 15 with ssl=on serving certs 'server' (CN/SAN localhost, 127.0.0.1)."""
  reap_stale_clusters()
  root = tempfile.mkdtemp(prefix="pgg-it-", dir="/tmp")
  Path(root, OWNER_FILE).write_text(str(os.getpid()))
  os.chmod(root, 0o755)
  if os.geteuid() == 0:
    shutil.chown(root, "postgres", "postgres")
  server = TlsPostgres(root, certs)
  started = False
  try:
    server.init()
    server.start()
    started = True
    yield server
  finally:
    if started:
      server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def served_cert(tls_pg):
  """Switch the certificate tls_pg serves for one test: served_cert('expired'). Restored after."""
  yield tls_pg.use_cert
  tls_pg.use_cert("server")
