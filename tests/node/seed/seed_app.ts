// The seed scenario's Prisma 7 application (tests/integration/test_seed_scenario.py).
//   tsx seed_app.ts probe URL  one read of a project-finance table; reports its error code
//   tsx seed_app.ts run URL    a request touching every project-finance table, then a write
//                              and a count per table; never retries; reports each step
// Prints one JSON object on its last line.
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client.ts";

const [mode, url] = process.argv.slice(2);
if (!url || (mode !== "probe" && mode !== "run")) {
  console.error("usage: tsx seed_app.ts probe|run postgresql://user:pass@host:port/db");
  process.exit(2);
}

// A hard bound so a stuck proxy can never hang the test suite.
const watchdog = setTimeout(() => {
  console.error("seed_app.ts: timed out");
  process.exit(3);
}, 60000);

const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });

type Step = { ok: boolean; ms: number; code?: string | null; message?: string; value?: unknown };

// One attempt, timed; an error is recorded, never retried.
async function step<T>(fn: () => Promise<T>, view?: (v: T) => unknown): Promise<Step & { raw?: T }> {
  const t0 = performance.now();
  try {
    const v = await fn();
    return { ok: true, ms: performance.now() - t0, value: view ? view(v) : undefined, raw: v };
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { ok: false, ms: performance.now() - t0, code: err.code ?? null, message: String(err.message ?? e) };
  }
}

function strip(s: Step & { raw?: unknown }): Step {
  const { raw: _raw, ...rest } = s;
  return rest;
}

async function probe() {
  const r = await step(() => prisma.projectVendor.findMany({ take: 1 }));
  return { probe: strip(r) };
}

async function run() {
  const out: Record<string, unknown> = {};
  const tag = `${process.pid}-${Date.now()}`;
  // Core data from the restored backup (read only).
  const project = await prisma.project.findFirstOrThrow({ orderBy: { id: "asc" } });
  const user = await prisma.user.findFirstOrThrow({ orderBy: { id: "asc" } });

  // The first request that meets the missing tables: one project with every finance relation.
  const first = await step(
    () =>
      prisma.project.findUnique({
        where: { id: project.id },
        include: {
          developers: true, lineItems: true, expenses: true, funding: true, invoices: true,
          forecasts: true, milestones: true, vendors: true, snapshots: true, purchaseOrders: true,
          stages: { include: { template: true } },
        },
      }),
    (p) => ({ code: p?.code, relations: p ? Object.keys(p).filter((k) => Array.isArray((p as Record<string, unknown>)[k])).length : 0 }),
  );
  out.first = strip(first);

  // One write per project-finance table, in dependency order, each its own request.
  const writes: Record<string, Step> = {};
  const template = await step(() => prisma.stageTemplate.create({ data: { name: `Design ${tag}` } }));
  writes.stage_templates = strip(template);
  const stage = await step(() =>
    prisma.projectStage.create({ data: { projectId: project.id, templateId: template.raw?.id, name: "Design", position: 1 } }),
  );
  writes.project_stages = strip(stage);
  writes.project_milestones = strip(await step(() =>
    prisma.projectMilestone.create({ data: { projectId: project.id, stageId: stage.raw?.id, title: "Drawings", dueOn: new Date("2024-06-30") } }),
  ));
  const vendor = await step(() => prisma.projectVendor.create({ data: { projectId: project.id, name: `Acme ${tag}` } }));
  writes.project_vendors = strip(vendor);
  const line = await step(() =>
    prisma.budgetLineItem.create({ data: { projectId: project.id, category: "labour", amount: "1000.50" } }),
  );
  writes.budget_line_items = strip(line);
  writes.project_expenses = strip(await step(() =>
    prisma.projectExpense.create({
      data: { projectId: project.id, lineItemId: line.raw?.id, vendorId: vendor.raw?.id, amount: "250.25", status: "APPROVED", incurredOn: new Date("2024-03-01") },
    }),
  ));
  writes.project_funding = strip(await step(() =>
    prisma.projectFunding.create({ data: { projectId: project.id, source: "LOAN", amount: "50000.00" } }),
  ));
  writes.project_invoices = strip(await step(() =>
    prisma.projectInvoice.create({ data: { projectId: project.id, number: `INV-${tag}`, amount: "1200.00", status: "SENT" } }),
  ));
  writes.project_forecasts = strip(await step(() =>
    prisma.projectForecast.create({ data: { projectId: project.id, period: "2024-Q2", amount: "3000.00" } }),
  ));
  writes.project_cash_flow_snapshots = strip(await step(() =>
    prisma.projectCashFlowSnapshot.create({ data: { projectId: project.id, inflow: "100.00", outflow: "50.00", balance: "50.00" } }),
  ));
  writes.purchase_orders = strip(await step(() =>
    prisma.purchaseOrder.create({ data: { projectId: project.id, vendorId: vendor.raw?.id ?? 0, number: `PO-${tag}`, total: "999.99" } }),
  ));
  writes.developer_projects = strip(await step(() =>
    prisma.developerProject.create({ data: { developerId: user.id, projectId: project.id, role: "lead" } }),
  ));
  out.writes = writes;

  // A read of every table, all in one interactive transaction (BEGIN first, as Prisma does).
  const counts = await step(() =>
    prisma.$transaction(async (tx) => ({
      developer_projects: await tx.developerProject.count(),
      budget_line_items: await tx.budgetLineItem.count(),
      project_expenses: await tx.projectExpense.count(),
      project_funding: await tx.projectFunding.count(),
      project_invoices: await tx.projectInvoice.count(),
      project_forecasts: await tx.projectForecast.count(),
      project_milestones: await tx.projectMilestone.count(),
      project_vendors: await tx.projectVendor.count(),
      project_cash_flow_snapshots: await tx.projectCashFlowSnapshot.count(),
      purchase_orders: await tx.purchaseOrder.count(),
      project_stages: await tx.projectStage.count(),
      stage_templates: await tx.stageTemplate.count(),
    })),
    (v) => v,
  );
  out.counts = strip(counts);
  return out;
}

(mode === "probe" ? probe() : run())
  .then(async (out) => {
    await prisma.$disconnect();
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify(out) + "\n");
  })
  .catch(async (e) => {
    clearTimeout(watchdog);
    process.stdout.write(JSON.stringify({ fatal: { message: String(e?.message ?? e), code: e?.code ?? null } }) + "\n");
    await prisma.$disconnect().catch(() => {});
    process.exitCode = 1;
  });
