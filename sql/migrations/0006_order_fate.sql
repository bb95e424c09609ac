-- 0006_order_fate.sql - one authority over an order's fate (issue 9). Safe to re-run.
--
--  order_sagas.reserve / charge  what the saga did at each downstream step: 'none', 'sent'
--                    (the call went out; its outcome is unknown until recorded), 'done' or
--                    'refused'. Compensation undoes exactly what is 'sent' or 'done'.
--  order_sagas.releases  how many releases were queued: a release that must follow a late
--                    reservation goes out under its own key (order-N-release-2, ...).
--  outbox.after_id   the row is delivered only once that row is delivered (an ORDER_CANCELLED
--                    never overtakes an ORDER_CREATED still in flight; a shipment is cancelled
--                    only after its creation call came back).
--  outbox.sent_at    when a call for the row first went out: a ship row that never went out is
--                    simply voided by a cancel; one that did needs a shipping cancel.
--  idempotency_keys.order_id  the order a create key made, written in the transaction that
--                    inserts the order: a key with an order is never released or taken over.
--  order_attention   orders a person must look at (a refund the payment service never
--                    confirmed within the reconciliation window).
--  order_events      also records saga steps (field 'saga') for the timeline.

ALTER TABLE order_sagas ADD COLUMN IF NOT EXISTS reserve text NOT NULL DEFAULT 'none';
ALTER TABLE order_sagas ADD COLUMN IF NOT EXISTS charge text NOT NULL DEFAULT 'none';
ALTER TABLE order_sagas ADD COLUMN IF NOT EXISTS releases int NOT NULL DEFAULT 0;
ALTER TABLE order_sagas DROP CONSTRAINT IF EXISTS order_sagas_reserve_check;
ALTER TABLE order_sagas ADD CONSTRAINT order_sagas_reserve_check
    CHECK (reserve IN ('none', 'sent', 'done', 'refused'));
ALTER TABLE order_sagas DROP CONSTRAINT IF EXISTS order_sagas_charge_check;
ALTER TABLE order_sagas ADD CONSTRAINT order_sagas_charge_check
    CHECK (charge IN ('none', 'sent', 'done', 'refused'));

ALTER TABLE outbox ADD COLUMN IF NOT EXISTS after_id bigint;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS sent_at timestamptz;
-- cancel and the timeline find an order's rows
CREATE INDEX IF NOT EXISTS outbox_order_id_idx ON outbox (order_id, id);

ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS order_id bigint;

CREATE TABLE IF NOT EXISTS order_attention (
    order_id    bigint      PRIMARY KEY REFERENCES ordersapp_order (order_id) ON DELETE CASCADE,
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX IF NOT EXISTS order_attention_open_idx
    ON order_attention (created_at) WHERE resolved_at IS NULL;

ALTER TABLE order_events DROP CONSTRAINT IF EXISTS order_events_field_check;
ALTER TABLE order_events ADD CONSTRAINT order_events_field_check
    CHECK (field IN ('order_status', 'payment_status', 'shipping_status', 'saga'));
