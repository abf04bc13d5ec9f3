-- The release after the backup: one object of every kind a pg_dump --schema-only holds.
CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

CREATE SCHEMA reporting;

CREATE DOMAIN email AS citext CONSTRAINT email_shape CHECK (VALUE ~ '^[^@]+@[^@]+$');
CREATE DOMAIN positive_amount AS numeric(12,2) DEFAULT 0 NOT NULL
  CONSTRAINT positive_amount_check CHECK (VALUE >= 0);
CREATE TYPE address AS (street text, city text COLLATE "C", zip varchar(10));
-- A domain whose check calls a function: the function comes first.
CREATE FUNCTION is_slug(text) RETURNS boolean LANGUAGE sql IMMUTABLE
  AS $$ SELECT $1 ~ '^[a-z0-9-]+$' $$;
CREATE DOMAIN slug AS text CONSTRAINT slug_shape CHECK (is_slug(VALUE));

CREATE SEQUENCE invoice_no_seq START 1000;
CREATE UNLOGGED SEQUENCE ticket_seq;

-- Called by a column default: created before the tables.
CREATE FUNCTION next_invoice_no() RETURNS text LANGUAGE sql
  AS $$ SELECT 'INV-' || nextval('public.invoice_no_seq')::text $$;

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TABLE customers (
  id serial PRIMARY KEY,
  email email NOT NULL UNIQUE,
  name text COLLATE "C",
  home address,
  credit positive_amount,
  handle slug,
  updated_at timestamptz
);

CREATE TABLE invoices (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  no text NOT NULL DEFAULT next_invoice_no(),
  customer_id integer REFERENCES customers (id),
  amount positive_amount
);

CREATE TABLE bookings (
  id serial PRIMARY KEY,
  room integer NOT NULL,
  during tstzrange NOT NULL,
  EXCLUDE USING gist (room WITH =, during WITH &&)
);

CREATE UNLOGGED TABLE session_cache (
  key text PRIMARY KEY,
  value jsonb,
  expires_at timestamptz
);

CREATE TABLE events (
  id bigserial,
  account_id bigint,
  at timestamptz NOT NULL,
  kind text NOT NULL,
  payload jsonb,
  PRIMARY KEY (id, at, kind)
) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
  PARTITION BY LIST (kind);
CREATE TABLE events_2026_click PARTITION OF events_2026 FOR VALUES IN ('click', 'tap');
CREATE TABLE events_2026_other PARTITION OF events_2026 DEFAULT;
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_account_idx ON events (account_id);

-- Columns and an index on the tables the backup already has.
ALTER TABLE accounts ADD COLUMN slug text COLLATE "C";
-- (A column of the checked domain email on accounts, which has rows, would
-- need a migration: test_lock_light.py. customers.email is one on a new table.)
CREATE INDEX accounts_name_trgm ON accounts USING gin (name gin_trgm_ops);

-- A signature that names a table's row type: created after the tables.
CREATE FUNCTION account_orders(a accounts) RETURNS SETOF orders LANGUAGE sql STABLE
  AS $$ SELECT * FROM public.orders WHERE account_id = a.id $$;
CREATE PROCEDURE archive_paid(cutoff timestamptz) LANGUAGE plpgsql AS $$
BEGIN
  UPDATE public.orders SET status = 'archived' WHERE status = 'paid' AND updated_at < cutoff;
END
$$;

CREATE TRIGGER orders_touch BEFORE UPDATE ON orders
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER customers_touch_credit BEFORE INSERT OR UPDATE OF credit, name ON customers
  FOR EACH ROW WHEN (NEW.name IS NOT NULL) EXECUTE FUNCTION touch_updated_at();

CREATE VIEW reporting.account_totals AS
  SELECT a.id, a.name, count(o.id) AS orders, coalesce(sum(o.total), 0) AS total
  FROM accounts a LEFT JOIN orders o ON o.account_id = a.id
  GROUP BY a.id, a.name;
CREATE VIEW reporting.big_accounts WITH (security_barrier) AS
  SELECT * FROM reporting.account_totals WHERE total > 1000;
CREATE FUNCTION reporting.add_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.accounts (name) VALUES (NEW.name);
  RETURN NEW;
END
$$;
CREATE TRIGGER account_totals_insert INSTEAD OF INSERT ON reporting.account_totals
  FOR EACH ROW EXECUTE FUNCTION reporting.add_account();
ALTER VIEW reporting.account_totals ALTER COLUMN orders SET DEFAULT 0;
CREATE MATERIALIZED VIEW reporting.daily_revenue AS
  SELECT date_trunc('day', o.updated_at) AS day, sum(o.total) AS revenue
  FROM orders o GROUP BY 1;
CREATE UNIQUE INDEX daily_revenue_day ON reporting.daily_revenue (day);

-- Kinds pgguard reports but does not create.
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_by_account ON orders
  USING (account_id = current_setting('app.account_id', true)::bigint);
CREATE RULE accounts_no_delete AS ON DELETE TO accounts DO INSTEAD NOTHING;
SET client_min_messages = error;  -- "wal_level is insufficient": not for this test
CREATE PUBLICATION orders_pub FOR TABLE orders;
RESET client_min_messages;
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE NOTICE 'ddl';
END
$$;
-- An event trigger is the superuser's.
RESET ROLE;
CREATE EVENT TRIGGER kinds_log_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
-- A function in an untrusted language needs a superuser: reported, not created.
CREATE FUNCTION c_len(text) RETURNS integer AS 'textlen' LANGUAGE internal IMMUTABLE STRICT;
CREATE STATISTICS orders_account_status (dependencies) ON account_id, status FROM orders;
CREATE AGGREGATE text_concat(text) (SFUNC = textcat, STYPE = text);
COMMENT ON TABLE customers IS 'People who buy';
GRANT SELECT ON customers TO kinds_reader;
GRANT SELECT (name) ON accounts TO kinds_reader;
REVOKE EXECUTE ON PROCEDURE archive_paid(timestamptz) FROM PUBLIC;
ALTER TABLE orders SET (fillfactor = 90);
ALTER TABLE customers ALTER COLUMN name SET STATISTICS 500;
CREATE TRIGGER orders_audit AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
ALTER TABLE orders DISABLE TRIGGER orders_audit;
CREATE TABLE address_book OF address;
ALTER TABLE events_2024 ADD CONSTRAINT events_2024_kind CHECK (kind <> '');
