-- 0009_order_skus.sql - the distinct SKUs ever ordered, for the list's text search (issue 14).
-- Safe to re-run.
--
-- `?search=text` matches orders with an item whose SKU contains the text. Matching the items
-- themselves (`sku ILIKE '%text%'` over the trigram index of 0003) costs a few ms even for one
-- SKU: the trigrams every SKU shares ("sku", "ku0") have posting lists as long as the table.
-- The handler first matches the text against this much smaller table (one row per SKU): a
-- few SKUs, and the list asks for exactly those (`sku = ANY(...)`, the btree of 0007). Rows
-- are never removed: a SKU no longer in any item just matches no order, since the list still
-- filters ordersapp_orderitem.
CREATE TABLE IF NOT EXISTS order_skus (
    sku varchar(100) PRIMARY KEY
);
-- The lookup is a prepared statement (generic plan): the trigram index answers it in well under
-- a millisecond whatever the catalog's size, where a scan is linear in it.
CREATE INDEX IF NOT EXISTS order_skus_sku_trgm_idx ON order_skus USING gin (sku gin_trgm_ops);

-- Complete in the transaction that writes the items, so a new SKU is searchable as soon as its
-- order exists. Statement level for inserts: one INSERT ... SELECT per create, whatever the
-- number of items. Transition tables allow one event per trigger, and the API never changes an
-- item's SKU: a row trigger covers that (a hand-made UPDATE).
CREATE OR REPLACE FUNCTION order_skus_add_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_skus (sku) SELECT DISTINCT sku FROM new_items ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER ordersapp_orderitem_order_skus_insert
    AFTER INSERT ON ordersapp_orderitem REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION order_skus_add_inserted();

CREATE OR REPLACE FUNCTION order_skus_add_updated() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_skus (sku) VALUES (NEW.sku) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER ordersapp_orderitem_order_skus_update
    AFTER UPDATE OF sku ON ordersapp_orderitem
    FOR EACH ROW WHEN (OLD.sku IS DISTINCT FROM NEW.sku) EXECUTE FUNCTION order_skus_add_updated();

INSERT INTO order_skus (sku) SELECT DISTINCT sku FROM ordersapp_orderitem ON CONFLICT DO NOTHING;
-- The lookup's broad threshold reads the table's row estimate (orders.sql, SKU_LOOKUP).
ANALYZE order_skus;

-- A broad search walks the orders and tests each one's items (`order_id` equal, then the SKU):
-- with the SKU in the index that is an index-only scan, no heap page per item. It serves
-- everything the plain order_id index of 0003 did (the cascade from ordersapp_order too), which
-- it replaces. Plain CREATE INDEX, as in 0007: on a large live table, build it by hand with
-- CREATE INDEX CONCURRENTLY under this name first; this file then finds it.
CREATE INDEX IF NOT EXISTS ordersapp_orderitem_order_id_sku_idx
    ON ordersapp_orderitem (order_id) INCLUDE (sku);
DROP INDEX IF EXISTS ordersapp_orderitem_order_id_idx;
