-- The shop at its old release: what the nightly backup holds.
CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  total numeric(12,2) NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'new',
  updated_at timestamptz
);
CREATE INDEX orders_account_id_idx ON orders (account_id);
