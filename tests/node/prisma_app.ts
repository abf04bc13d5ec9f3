// A small Prisma 7 application driven by tests/integration/test_prisma.py: CRUD and a nested
// write in an interactive $transaction against the URL given, printing one JSON object.
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client.ts";

const url = process.argv[2];
if (!url) {
  console.error("usage: tsx prisma_app.ts postgresql://user:pass@host:port/db");
  process.exit(2);
}

// A hard bound so a stuck proxy can never hang the test suite.
const watchdog = setTimeout(() => {
  console.error("prisma_app.ts: timed out");
  process.exit(3);
}, 45000);

const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });

async function main() {
  const out: Record<string, unknown> = {};
  const tag = `${process.pid}-${Date.now()}`;

  const alice = await prisma.user.create({ data: { email: `alice-${tag}@example.com`, name: "Alice" } });
  out.created = { idIsNumber: typeof alice.id === "number", name: alice.name };

  const found = await prisma.user.findUnique({ where: { id: alice.id } });
  out.read = { email: found?.email === alice.email, name: found?.name };

  const renamed = await prisma.user.update({ where: { id: alice.id }, data: { name: "Alice B." } });
  out.updated = { name: renamed.name };

  // A nested write (user with two posts) and a read inside one interactive transaction.
  const nested = await prisma.$transaction(async (tx) => {
    const bob = await tx.user.create({
      data: {
        email: `bob-${tag}@example.com`,
        name: "Bob",
        posts: { create: [{ title: "first", published: true }, { title: "second", content: "draft" }] },
      },
      include: { posts: { orderBy: { id: "asc" } } },
    });
    const count = await tx.post.count({ where: { authorId: bob.id } });
    return { bobId: bob.id, titles: bob.posts.map((p) => p.title), count };
  });
  out.nested = { titles: nested.titles, count: nested.count };

  // A transaction that throws leaves nothing behind.
  let rolledBack = false;
  try {
    await prisma.$transaction(async (tx) => {
      await tx.user.create({ data: { email: `carol-${tag}@example.com`, name: "Carol" } });
      throw new Error("abort on purpose");
    });
  } catch (e) {
    rolledBack = (e as Error).message === "abort on purpose";
  }
  const carol = await prisma.user.findUnique({ where: { email: `carol-${tag}@example.com` } });
  out.rollback = { rolledBack, carolExists: carol !== null };

  // A unique violation comes back as Prisma's P2002.
  try {
    await prisma.user.create({ data: { email: alice.email } });
    out.duplicate = { code: null };
  } catch (e) {
    out.duplicate = { code: (e as { code?: string }).code ?? null };
  }

  const withPosts = await prisma.user.findUnique({ where: { id: nested.bobId }, include: { posts: true } });
  out.relation = { posts: withPosts?.posts.length };

  await prisma.post.deleteMany({ where: { authorId: nested.bobId } });
  await prisma.user.delete({ where: { id: nested.bobId } });
  await prisma.user.delete({ where: { id: alice.id } });
  out.deleted = {
    remaining: await prisma.user.count({ where: { email: { endsWith: `${tag}@example.com` } } }),
  };
  return out;
}

main()
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
