-- The desired schema of tests/integration/test_replay.py. Each test builds its live
-- database from this file and then removes what it wants missing (a table, a column,
-- an enum type, an enum label), so desired and live differ only by that.

CREATE SCHEMA "app";

CREATE TABLE "app"."accounts" (
    "id" INTEGER NOT NULL,
    "name" TEXT NOT NULL,

    CONSTRAINT "accounts_pkey" PRIMARY KEY ("id")
);

CREATE TYPE "mood" AS ENUM ('happy', 'sad', 'meh');

CREATE TYPE "priority" AS ENUM ('low', 'high');

CREATE TABLE "existing" (
    "id" SERIAL NOT NULL,
    "note" TEXT NOT NULL,
    "extra" TEXT,

    CONSTRAINT "existing_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "widgets" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "existing_id" INTEGER,

    CONSTRAINT "widgets_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "mood_log" (
    "id" SERIAL NOT NULL,
    "m" "mood" NOT NULL,

    CONSTRAINT "mood_log_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "widgets_name_key" ON "widgets"("name");

ALTER TABLE "widgets" ADD CONSTRAINT "widgets_existing_id_fkey" FOREIGN KEY ("existing_id") REFERENCES "existing"("id") ON DELETE SET NULL ON UPDATE CASCADE;
