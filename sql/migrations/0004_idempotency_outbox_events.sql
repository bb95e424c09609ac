-- 0004_idempotency_outbox_events.sql - service bookkeeping tables. Safe to re-run.
--
--  idempotency_keys  one row per (scope, Idempotency-Key): 'in_progress' while the first request
--                    runs, then 'done' with the stored response replayed to retries. Rows past
--                    expires_at may be deleted by a sweeper (hence the index).
--  outbox            events written in the same transaction as the order change, delivered
--                    later with retries; pending rows are found through a partial index.
--                    order_id has no foreign key on purpose: an event outlives its order.
--  order_events      status history, one row per field change, with who and why.

CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope           text        NOT NULL,
    key             text        NOT NULL,
    request_hash    text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('in_progress', 'done')),
    response_status int,
    response_body   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (scope, key)
);

CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

CREATE TABLE IF NOT EXISTS outbox (
    id              bigserial   PRIMARY KEY,
    kind            text        NOT NULL,
    order_id        bigint,
    payload         jsonb       NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);

CREATE INDEX IF NOT EXISTS outbox_pending_idx
    ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE IF NOT EXISTS order_events (
    id          bigserial   PRIMARY KEY,
    order_id    bigint      NOT NULL REFERENCES ordersapp_order (order_id) ON DELETE CASCADE,
    field       text        NOT NULL
                            CHECK (field IN ('order_status', 'payment_status', 'shipping_status')),
    from_status text,
    to_status   text        NOT NULL,
    actor       text        NOT NULL,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS order_events_order_id_idx ON order_events (order_id, id);
