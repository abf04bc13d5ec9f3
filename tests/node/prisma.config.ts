// Prisma 7 CLI configuration: where the schema is and which database the CLI would use.
// Only `prisma generate` runs in the tests (offline), so the URL is a placeholder unless set.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  datasource: {
    url: process.env.DATABASE_URL ?? "postgresql://localhost:5432/unused",
  },
});
