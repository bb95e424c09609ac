-- 0001_orders.sql - the legacy Django tables, exactly as ordersapp created them.
--
-- Names and types are kept so the old admin and reports keep working; everything the service
-- adds lives in later migrations. Safe to re-run, and harmless on a database Django already made.
-- Migration files must not contain transaction control: the runner wraps each in one transaction.

CREATE SEQUENCE IF NOT EXISTS ordersapp_order_order_id_seq AS bigint;

CREATE TABLE IF NOT EXISTS ordersapp_order (
    order_id       bigint        PRIMARY KEY DEFAULT nextval('ordersapp_order_order_id_seq'),
    customer_id    bigint        NOT NULL,
    order_status   varchar(20)   NOT NULL DEFAULT 'PENDING',
    payment_status varchar(20)   NOT NULL DEFAULT 'PENDING',
    order_total    numeric(10,2) NOT NULL DEFAULT 0,
    created_at     timestamptz   NOT NULL DEFAULT now()
);

-- dropping the column (or the table) drops the sequence with it, as with serial
ALTER SEQUENCE ordersapp_order_order_id_seq OWNED BY ordersapp_order.order_id;

CREATE SEQUENCE IF NOT EXISTS ordersapp_orderitem_order_item_id_seq AS bigint;

CREATE TABLE IF NOT EXISTS ordersapp_orderitem (
    order_item_id bigint        PRIMARY KEY DEFAULT nextval('ordersapp_orderitem_order_item_id_seq'),
    order_id      bigint        NOT NULL REFERENCES ordersapp_order (order_id) ON DELETE CASCADE,
    product_id    bigint        NOT NULL,
    sku           varchar(100)  NOT NULL,
    quantity      integer       NOT NULL DEFAULT 1,
    unit_price    numeric(10,2) NOT NULL DEFAULT 0
);

ALTER SEQUENCE ordersapp_orderitem_order_item_id_seq OWNED BY ordersapp_orderitem.order_item_id;
