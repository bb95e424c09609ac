-- 0003_order_indexes.sql - indexes for the order list, filters and SKU search.
--
-- Plain CREATE INDEX (not CONCURRENTLY): the runner applies each file in a transaction, and
-- these tables are small when this runs. Safe to re-run.

-- keyset pagination: "my orders, newest first" and "all orders, newest first";
-- order_id breaks ties between orders created in the same microsecond
CREATE INDEX IF NOT EXISTS ordersapp_order_customer_created_idx
    ON ordersapp_order (customer_id, created_at DESC, order_id DESC);
CREATE INDEX IF NOT EXISTS ordersapp_order_created_idx
    ON ordersapp_order (created_at DESC, order_id DESC);
-- sort / range filter by total, paginated by (order_total, order_id)
CREATE INDEX IF NOT EXISTS ordersapp_order_total_idx
    ON ordersapp_order (order_total, order_id);

CREATE INDEX IF NOT EXISTS ordersapp_order_order_status_idx ON ordersapp_order (order_status);
CREATE INDEX IF NOT EXISTS ordersapp_order_payment_status_idx ON ordersapp_order (payment_status);
CREATE INDEX IF NOT EXISTS ordersapp_order_shipping_status_idx ON ordersapp_order (shipping_status);

CREATE INDEX IF NOT EXISTS ordersapp_orderitem_order_id_idx ON ordersapp_orderitem (order_id);
CREATE INDEX IF NOT EXISTS ordersapp_orderitem_product_id_idx ON ordersapp_orderitem (product_id);

-- substring SKU search: `sku ILIKE '%' || $1 || '%'` can use a trigram index (ILIKE included,
-- so no lower(sku) index is needed). pg_trgm is a trusted extension: the database owner may
-- create it without superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS ordersapp_orderitem_sku_trgm_idx
    ON ordersapp_orderitem USING gin (sku gin_trgm_ops);
