-- bench/data.sql - 100,000 generated orders with 250,000 items over 10,000 customers, added
-- after the seed (ids above the seed's). Deterministic: the same rows every run.
--
-- SKUs are SKU00001..SKU02000 (2,000 products), so `search=SKU00` matches every generated
-- order: the broadest search there is. Statuses follow a realistic mix (most orders delivered,
-- a few pending), totals spread over 50.00..1049.99, created_at one every 5 minutes.
\set ON_ERROR_STOP on
-- The private cluster runs with synchronous_commit = off (tools/pgcluster). VACUUM cannot set
-- hint bits, so cannot mark pages all-visible, for a transaction whose commit record is not yet
-- flushed: the VACUUM below, right after the load, left the visibility map empty and every
-- index-only scan of the bench (the counts) fetched heap pages, which a live database, vacuumed
-- by autovacuum, does not. A synchronous commit of the load lets VACUUM do its job.
SET synchronous_commit = on;
BEGIN;
CREATE TEMP TABLE gen AS
SELECT s.base + g AS order_id, g
  FROM (SELECT COALESCE(max(order_id), 0) + 1000 AS base FROM ordersapp_order) s,
       generate_series(1, 100000) AS g;
INSERT INTO ordersapp_order (order_id, customer_id, order_status, payment_status, shipping_status,
                             order_total, subtotal, tax, shipping_fee, created_at, updated_at)
SELECT order_id, 1 + (g * 7) % 10000,
       CASE WHEN g % 50 = 0 THEN 'PENDING' WHEN g % 50 = 1 THEN 'CONFIRMED'
            WHEN g % 50 = 2 THEN 'SHIPPED' WHEN g % 50 < 6 THEN 'CANCELLED' ELSE 'DELIVERED' END,
       CASE WHEN g % 50 = 0 THEN 'PENDING' WHEN g % 50 < 6 AND g % 50 > 2 THEN 'FAILED'
            ELSE 'PAID' END,
       CASE WHEN g % 50 IN (0, 1) THEN 'Pending' WHEN g % 50 = 2 THEN 'Shipped'
            WHEN g % 50 < 6 THEN 'Cancelled' ELSE 'Delivered' END,
       50 + (g * 37 % 100000) / 100.0, 50 + (g * 37 % 100000) / 100.0, 0, 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '5 minutes',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '5 minutes'
  FROM gen;
-- 2 or 3 items per order (250,000 in all)
INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
SELECT gen.order_id, p, 'SKU' || lpad(p::text, 5, '0'), 1 + (gen.g + k) % 3, (p % 5000) / 100.0
  FROM gen, generate_series(1, 3) AS k,
       LATERAL (SELECT 1 + ((gen.g * 3 + k)::bigint * 7919) % 2000 AS p) x
 WHERE k < 3 OR gen.g % 2 = 0;
SELECT setval('ordersapp_order_order_id_seq', (SELECT max(order_id) FROM ordersapp_order));
COMMIT;
VACUUM ANALYZE ordersapp_order;
VACUUM ANALYZE ordersapp_orderitem;
