// node-postgres over TLS, driven by tests/integration/test_tls.py: connects with the JSON settings
// given as argv[2], reports what the client saw (TLS state, both legs, a 2 MB row) as one JSON line.
import crypto from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";

// ESM ignores NODE_PATH; a CommonJS require honours it (pg lives in tests/node/node_modules).
const require = createRequire(import.meta.url);
const pg = require("pg");

const cfg = JSON.parse(process.argv[2] || "{}");
const print = (o) => console.log(JSON.stringify(o));

// A hard bound so a stuck proxy can never hang the test suite.
const watchdog = setTimeout(() => {
  print({ fatal: "tls_node_client.mjs: timed out" });
  process.exit(3);
}, 30000);

const md5 = (s) => crypto.createHash("md5").update(s).digest("hex");

async function main() {
  const out = {};
  const client = new pg.Client({
    host: cfg.host,
    port: cfg.port,
    user: cfg.user,
    password: cfg.password,
    database: cfg.database,
    application_name: "tls_node_client",
    connectionTimeoutMillis: 10000,
    enableChannelBinding: Boolean(cfg.enableChannelBinding),
    ssl: { ca: fs.readFileSync(cfg.ca, "utf8"), servername: cfg.servername },
  });
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (e) {
    out.connectError = { code: e.code ?? null, message: e.message, detail: e.detail ?? null };
    return out;
  }
  const s = client.connection.stream;
  out.clientTls = {
    encrypted: Boolean(s.encrypted),
    authorized: s.authorized ?? null,
    protocol: typeof s.getProtocol === "function" ? s.getProtocol() : null,
  };
  const leg = await client.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  out.serverLeg = leg.rows[0];
  out.answer = (await client.query("SELECT 6 * 7 AS a")).rows[0].a;

  // 2 MB of text out as a parameter and back as a value.
  const big = crypto.randomBytes(1024 * 1024).toString("hex");
  const r = await client.query("SELECT $1::text AS v, md5($1::text) AS m", [big]);
  out.bigRow = { len: r.rows[0].v.length, intact: r.rows[0].v === big, md5Matches: r.rows[0].m === md5(big) };
  await client.end();
  return out;
}

main()
  .then((out) => {
    clearTimeout(watchdog);
    print(out);
  })
  .catch((e) => {
    clearTimeout(watchdog);
    print({ fatal: String(e && e.stack ? e.stack : e) });
    process.exit(1);
  });
