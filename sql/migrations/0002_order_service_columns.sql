-- 0002_order_service_columns.sql - what the service adds to the legacy tables: shipping status,
-- updated_at (kept current by a trigger), the price breakdown, and the CHECK constraints that
-- make the status vocabularies and money rules hold in the database, not only in code.
--
-- subtotal / tax / shipping_fee stay NULL for legacy orders: their breakdown was never recorded.
-- Safe to re-run: columns use IF NOT EXISTS, constraints are added only when missing by name, and
-- the legacy value mapping only matches values the constraints forbid.

ALTER TABLE ordersapp_order
    ADD COLUMN IF NOT EXISTS shipping_status varchar(20)   NOT NULL DEFAULT 'Unknown',
    ADD COLUMN IF NOT EXISTS updated_at      timestamptz   NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS subtotal        numeric(10,2),
    ADD COLUMN IF NOT EXISTS tax             numeric(10,2),
    ADD COLUMN IF NOT EXISTS shipping_fee    numeric(10,2);

-- A database Django already filled uses the old vocabulary; map it (as the seed loader does)
-- before the constraints below would refuse it. Matches no row on a new database.
UPDATE ordersapp_order SET order_status = 'PENDING' WHERE order_status = 'CREATED';
UPDATE ordersapp_order SET payment_status = 'PAID' WHERE payment_status = 'SUCCESS';
UPDATE ordersapp_order SET shipping_status = 'Delivered'
 WHERE order_status = 'DELIVERED' AND shipping_status = 'Unknown';

-- ALTER TABLE has no ADD CONSTRAINT IF NOT EXISTS, so each constraint is added only when no
-- constraint of that name exists on the table. Names and definitions are fixed text; the
-- names still go through %I.
DO $migration$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('ordersapp_order', 'ordersapp_order_order_status_check',
             $$order_status IN ('PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'CANCELLED')$$),
            ('ordersapp_order', 'ordersapp_order_payment_status_check',
             $$payment_status IN ('PENDING', 'PAID', 'FAILED', 'REFUNDED')$$),
            ('ordersapp_order', 'ordersapp_order_shipping_status_check',
             $$shipping_status IN ('Pending', 'Shipped', 'Delivered', 'Failed', 'Unknown', 'Cancelled')$$),
            ('ordersapp_order', 'ordersapp_order_order_total_check', $$order_total >= 0$$),
            ('ordersapp_order', 'ordersapp_order_subtotal_check', $$subtotal IS NULL OR subtotal >= 0$$),
            ('ordersapp_order', 'ordersapp_order_tax_check', $$tax IS NULL OR tax >= 0$$),
            ('ordersapp_order', 'ordersapp_order_shipping_fee_check',
             $$shipping_fee IS NULL OR shipping_fee >= 0$$),
            ('ordersapp_order', 'ordersapp_order_customer_id_check', $$customer_id > 0$$),
            ('ordersapp_orderitem', 'ordersapp_orderitem_quantity_check', $$quantity >= 1$$),
            ('ordersapp_orderitem', 'ordersapp_orderitem_unit_price_check', $$unit_price >= 0$$),
            ('ordersapp_orderitem', 'ordersapp_orderitem_product_id_check', $$product_id > 0$$),
            ('ordersapp_orderitem', 'ordersapp_orderitem_sku_check',
             $$char_length(sku) BETWEEN 1 AND 100$$)
        ) AS t (tbl, name, def)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conrelid = c.tbl::regclass AND conname = c.name) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%s)', c.tbl, c.name, c.def);
        END IF;
    END LOOP;
END
$migration$;

-- updated_at follows every real change; an UPDATE that changes nothing leaves it alone.
CREATE OR REPLACE FUNCTION ordersapp_order_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER ordersapp_order_touch_updated_at
    BEFORE UPDATE ON ordersapp_order
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION ordersapp_order_touch_updated_at();
