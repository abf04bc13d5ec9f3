-- The shop database as an old backup has it: the first release's tables only.
CREATE TABLE "product" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "price" DECIMAL(8,2) NOT NULL,
    CONSTRAINT "product_pkey" PRIMARY KEY ("id")
);
INSERT INTO "product" ("name", "price") VALUES ('tea', 3.50), ('coffee', 4.20), ('cocoa', 3.90);
