-- Top-ups (issue 16): recharge orders paid through a payment processor
-- (Stripe), the processor events already applied, and each user's customer
-- at the processor.
--
-- Amounts: `amount` and `refunded_amount` are the currency's minor units
-- (cents), as the processor counts them; `credit` (with its `bonus` part)
-- and `refunded_credit` are nano-USD, as balances are.
CREATE TABLE payment_orders (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL,
    provider        TEXT NOT NULL,
    method          TEXT NOT NULL,
    state           TEXT NOT NULL,
    currency        TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    credit          BIGINT NOT NULL,
    bonus           BIGINT NOT NULL,
    refunded_amount BIGINT NOT NULL DEFAULT 0,
    refunded_credit BIGINT NOT NULL DEFAULT 0,
    external_id     TEXT,
    payment_id      TEXT,
    pay_url         TEXT,
    receipt_url     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    paid_at         BIGINT
);
CREATE UNIQUE INDEX payment_orders_by_external ON payment_orders(provider, external_id);
CREATE INDEX payment_orders_by_user ON payment_orders(user_id, id);
CREATE INDEX payment_orders_by_payment ON payment_orders(provider, payment_id);
CREATE INDEX payment_orders_by_paid ON payment_orders(paid_at);

-- Every processor event applied (or seen and ignored): its id is the key
-- that makes a replayed or concurrent duplicate change nothing.
CREATE TABLE payment_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    order_id    BIGINT,
    outcome     TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- A user's customer at a processor (made once, for invoices).
CREATE TABLE payment_customers (
    user_id     BIGINT NOT NULL,
    provider    TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, provider)
);
