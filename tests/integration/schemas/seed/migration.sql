-- The project-finance release's migration (old.sql -> new.sql): three enums and twelve tables.
-- As `prisma migrate diff --from-schema <old> --to-schema <new> --script` prints it.

-- CreateEnum
CREATE TYPE "ExpenseStatus" AS ENUM ('PENDING', 'APPROVED', 'PAID', 'REJECTED');

-- CreateEnum
CREATE TYPE "InvoiceStatus" AS ENUM ('DRAFT', 'SENT', 'PAID', 'OVERDUE', 'VOID');

-- CreateEnum
CREATE TYPE "FundingSource" AS ENUM ('EQUITY', 'LOAN', 'GRANT', 'INTERNAL');

-- CreateTable
CREATE TABLE "developer_projects" (
    "id" SERIAL NOT NULL,
    "developer_id" INTEGER NOT NULL,
    "project_id" INTEGER NOT NULL,
    "role" TEXT NOT NULL DEFAULT 'contributor',
    "joined_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "developer_projects_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "budget_line_items" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "category" TEXT NOT NULL,
    "description" TEXT,
    "amount" DECIMAL(14,2) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "budget_line_items_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_expenses" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "line_item_id" INTEGER,
    "vendor_id" INTEGER,
    "amount" DECIMAL(14,2) NOT NULL,
    "status" "ExpenseStatus" NOT NULL DEFAULT 'PENDING',
    "incurred_on" DATE NOT NULL,

    CONSTRAINT "project_expenses_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_funding" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "source" "FundingSource" NOT NULL,
    "amount" DECIMAL(14,2) NOT NULL,
    "received_on" DATE,

    CONSTRAINT "project_funding_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_invoices" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "number" VARCHAR(40) NOT NULL,
    "amount" DECIMAL(14,2) NOT NULL,
    "status" "InvoiceStatus" NOT NULL DEFAULT 'DRAFT',
    "due_on" DATE,

    CONSTRAINT "project_invoices_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_forecasts" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "period" VARCHAR(7) NOT NULL,
    "amount" DECIMAL(14,2) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "project_forecasts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_milestones" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "stage_id" INTEGER,
    "title" TEXT NOT NULL,
    "due_on" DATE NOT NULL,
    "completed_at" TIMESTAMP(3),

    CONSTRAINT "project_milestones_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_vendors" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "contact_email" TEXT,

    CONSTRAINT "project_vendors_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_cash_flow_snapshots" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "taken_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "inflow" DECIMAL(14,2) NOT NULL DEFAULT 0,
    "outflow" DECIMAL(14,2) NOT NULL DEFAULT 0,
    "balance" DECIMAL(14,2) NOT NULL,

    CONSTRAINT "project_cash_flow_snapshots_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "purchase_orders" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "vendor_id" INTEGER NOT NULL,
    "number" VARCHAR(40) NOT NULL,
    "total" DECIMAL(14,2) NOT NULL,
    "issued_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "purchase_orders_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "project_stages" (
    "id" SERIAL NOT NULL,
    "project_id" INTEGER NOT NULL,
    "template_id" INTEGER,
    "name" TEXT NOT NULL,
    "position" INTEGER NOT NULL,

    CONSTRAINT "project_stages_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "stage_templates" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "default_duration_days" INTEGER NOT NULL DEFAULT 14,

    CONSTRAINT "stage_templates_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "developer_projects_developer_id_project_id_key" ON "developer_projects"("developer_id", "project_id");

-- CreateIndex
CREATE INDEX "budget_line_items_project_id_idx" ON "budget_line_items"("project_id");

-- CreateIndex
CREATE INDEX "project_expenses_project_id_incurred_on_idx" ON "project_expenses"("project_id", "incurred_on");

-- CreateIndex
CREATE INDEX "project_funding_project_id_idx" ON "project_funding"("project_id");

-- CreateIndex
CREATE UNIQUE INDEX "project_invoices_project_id_number_key" ON "project_invoices"("project_id", "number");

-- CreateIndex
CREATE UNIQUE INDEX "project_forecasts_project_id_period_key" ON "project_forecasts"("project_id", "period");

-- CreateIndex
CREATE INDEX "project_milestones_project_id_due_on_idx" ON "project_milestones"("project_id", "due_on");

-- CreateIndex
CREATE UNIQUE INDEX "project_vendors_project_id_name_key" ON "project_vendors"("project_id", "name");

-- CreateIndex
CREATE INDEX "project_cash_flow_snapshots_project_id_taken_at_idx" ON "project_cash_flow_snapshots"("project_id", "taken_at" DESC);

-- CreateIndex
CREATE UNIQUE INDEX "purchase_orders_number_key" ON "purchase_orders"("number");

-- CreateIndex
CREATE INDEX "project_stages_project_id_position_idx" ON "project_stages"("project_id", "position");

-- CreateIndex
CREATE UNIQUE INDEX "stage_templates_name_key" ON "stage_templates"("name");

-- AddForeignKey
ALTER TABLE "developer_projects" ADD CONSTRAINT "developer_projects_developer_id_fkey" FOREIGN KEY ("developer_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "developer_projects" ADD CONSTRAINT "developer_projects_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "budget_line_items" ADD CONSTRAINT "budget_line_items_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_expenses" ADD CONSTRAINT "project_expenses_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_expenses" ADD CONSTRAINT "project_expenses_line_item_id_fkey" FOREIGN KEY ("line_item_id") REFERENCES "budget_line_items"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_expenses" ADD CONSTRAINT "project_expenses_vendor_id_fkey" FOREIGN KEY ("vendor_id") REFERENCES "project_vendors"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_funding" ADD CONSTRAINT "project_funding_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_invoices" ADD CONSTRAINT "project_invoices_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_forecasts" ADD CONSTRAINT "project_forecasts_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_milestones" ADD CONSTRAINT "project_milestones_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_milestones" ADD CONSTRAINT "project_milestones_stage_id_fkey" FOREIGN KEY ("stage_id") REFERENCES "project_stages"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_vendors" ADD CONSTRAINT "project_vendors_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_cash_flow_snapshots" ADD CONSTRAINT "project_cash_flow_snapshots_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "purchase_orders" ADD CONSTRAINT "purchase_orders_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "purchase_orders" ADD CONSTRAINT "purchase_orders_vendor_id_fkey" FOREIGN KEY ("vendor_id") REFERENCES "project_vendors"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_stages" ADD CONSTRAINT "project_stages_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "project_stages" ADD CONSTRAINT "project_stages_template_id_fkey" FOREIGN KEY ("template_id") REFERENCES "stage_templates"("id") ON DELETE SET NULL ON UPDATE CASCADE;
