// node-postgres exercise driven by tests/integration/test_node_pg.py: runs a fixed session
// against the URL given and prints one JSON object describing what the client observed.
import crypto from "node:crypto";
import pg from "pg";

const url = process.argv[2];
if (!url) {
  console.error("usage: node pg_basic.mjs postgresql://user:pass@host:port/db");
  process.exit(2);
}

// A hard bound so a stuck proxy can never hang the test suite.
const watchdog = setTimeout(() => {
  console.error("pg_basic.mjs: timed out");
  process.exit(3);
}, 45000);

const sha = (s) => crypto.createHash("sha256").update(s).digest("hex");

async function errorOf(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return { code: e.code ?? null, message: e.message, severity: e.severity ?? null, position: e.position ?? null };
  }
}

async function main() {
  const out = {};
  const client = new pg.Client({ connectionString: url, application_name: "node_pg_basic" });
  await client.connect();

  // Parameterised queries (extended protocol with typed parameters), including NULL and unicode.
  const p = await client.query(
    "SELECT $1::int + $2::int AS sum, $3::text AS txt, $4::jsonb AS doc, $5::text IS NULL AS was_null, $6::numeric AS num",
    [40, 2, "héllo ✓", JSON.stringify({ a: [1, 2, { b: "c" }] }), null, "12345678901234567890.123"],
  );
  out.params = p.rows[0];

  // A named prepared statement run twice with different values.
  const named = [];
  for (const v of [7, 8]) {
    const r = await client.query({ name: "double_it", text: "SELECT $1::int * 2 AS d", values: [v] });
    named.push(r.rows[0].d);
  }
  out.named = named;

  // A 5 MB row in each direction: a 5 MB parameter and a 5 MB value in the result.
  const big = "y".repeat(5 * 1024 * 1024);
  const up = await client.query("SELECT length($1::text) AS len, md5($1::text) AS md5", [big]);
  out.bigParam = { len: up.rows[0].len, md5Matches: up.rows[0].md5 === crypto.createHash("md5").update(big).digest("hex") };
  const down = await client.query("SELECT repeat('z', 5 * 1024 * 1024) AS v");
  out.bigRow = { len: down.rows[0].v.length, sha: sha(down.rows[0].v), expectedSha: sha("z".repeat(5 * 1024 * 1024)) };

  // An error's code, and the connection staying usable after it.
  out.error = await errorOf(client.query("SELECT * FROM no_such_table_node"));
  out.divisionError = await errorOf(client.query("SELECT 1/0"));
  out.afterError = (await client.query("SELECT 'ok' AS s")).rows[0].s;

  // Cancel a running query with a CancelRequest carrying this session's key (what
  // node-postgres does in Client#cancel: a fresh connection sends the 16-byte request).
  // Client#cancel needs the Query object itself, not the promise client.query returns.
  const started = Date.now();
  const sleepQuery = new pg.Query("SELECT pg_sleep(30)");
  const sleeping = errorOf(new Promise((resolve, reject) => {
    sleepQuery.on("error", reject);
    sleepQuery.on("end", resolve);
  }));
  client.query(sleepQuery);
  await new Promise((r) => setTimeout(r, 500));
  const canceller = new pg.Client({ connectionString: url });
  canceller.cancel(client, sleepQuery);
  const cancelled = await sleeping;
  out.cancel = { ...cancelled, elapsedMs: Date.now() - started };
  out.afterCancel = (await client.query("SELECT 41 + 1 AS n")).rows[0].n;

  // pg_cancel_backend from a second session reaches the same backend.
  const pid = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid;
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  // errorOf attaches its handler now: the rejection may come before other.query resolves.
  const sleeping2 = errorOf(client.query("SELECT pg_sleep(30)"));
  // Cancel only once the backend is inside pg_sleep, or the cancel would hit nothing.
  for (let i = 0; i < 200; i++) {
    const r = await other.query("SELECT state, query FROM pg_stat_activity WHERE pid = $1", [pid]);
    if (r.rows[0]?.state === "active" && r.rows[0].query.includes("pg_sleep")) break;
    await new Promise((res) => setTimeout(res, 25));
  }
  await other.query("SELECT pg_cancel_backend($1)", [pid]);
  out.cancelBackend = await sleeping2;
  await other.end();

  // A transaction with a rollback leaves nothing behind.
  await client.query("BEGIN");
  await client.query("CREATE TEMP TABLE t_node (id int)");
  await client.query("INSERT INTO t_node SELECT generate_series(1, 10)");
  const inTx = (await client.query("SELECT count(*)::int AS c FROM t_node")).rows[0].c;
  await client.query("ROLLBACK");
  const gone = await errorOf(client.query("SELECT count(*) FROM t_node"));
  out.transaction = { inTx, afterRollback: gone && gone.code };

  await client.end();
  return out;
}

main()
  .then((out) => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify(out) + "\n");
  })
  .catch((e) => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify({ fatal: { message: e.message, code: e.code ?? null, stack: e.stack } }) + "\n");
    process.exitCode = 1;
  });
