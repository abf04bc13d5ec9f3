// Prisma 7 CLI configuration of the seed scenario's application. Only `prisma generate` runs
// in the tests (offline), so the URL is a placeholder unless set.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  datasource: {
    url: process.env.DATABASE_URL ?? "postgresql://localhost:5432/unused",
  },
});
