-- 0005_order_sagas.sql - where each order's creation saga stands. Safe to re-run.
--
-- A row is written with the order, moves from 'reserving' to 'charging', and is finished
-- when the order is CONFIRMED or compensated. A row left unfinished past the grace period
-- belongs to a process that died mid-saga: the recovery job compensates it (release, and
-- refund when the charge may have happened) and cancels the order. Legacy orders have no
-- row, so the job never touches them.
CREATE TABLE IF NOT EXISTS order_sagas (
    order_id    bigint      PRIMARY KEY REFERENCES ordersapp_order (order_id) ON DELETE CASCADE,
    step        text        NOT NULL CHECK (step IN ('reserving', 'charging', 'done')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text
);
CREATE INDEX IF NOT EXISTS order_sagas_unfinished_idx
    ON order_sagas (updated_at) WHERE finished_at IS NULL;
