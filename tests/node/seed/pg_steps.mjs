// node-postgres driven by tests/integration/test_replay.py: runs the given steps on one
// connection, in order, with the extended protocol (parameterised and named statements),
// and prints one JSON array with what the client observed for each step. Never retries.
import pg from "pg";

const [url, stepsJson] = process.argv.slice(2);
if (!url || !stepsJson) {
  console.error("usage: node pg_steps.mjs postgresql://user:pass@host:port/db '[{\"text\": ...}]'");
  process.exit(2);
}

// A hard bound so a stuck proxy can never hang the test suite.
const watchdog = setTimeout(() => {
  console.error("pg_steps.mjs: timed out");
  process.exit(3);
}, 45000);

async function main() {
  const client = new pg.Client({ connectionString: url, application_name: "guard_pg_steps" });
  await client.connect();
  const out = [];
  for (const step of JSON.parse(stepsJson)) {
    const started = process.hrtime.bigint();
    const config = { text: step.text, values: step.values ?? [] };
    if (step.name) config.name = step.name;
    try {
      const r = await client.query(config);
      out.push({ rows: r.rows, rowCount: r.rowCount, command: r.command, ms: elapsed(started) });
    } catch (e) {
      out.push({
        error: { code: e.code ?? null, message: e.message, position: e.position ?? null },
        ms: elapsed(started),
      });
    }
  }
  await client.end();
  return out;
}

function elapsed(started) {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

main()
  .then((out) => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify(out) + "\n");
  })
  .catch((e) => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify({ fatal: String(e?.message ?? e) }) + "\n");
    process.exitCode = 1;
  });
