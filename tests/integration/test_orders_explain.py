"""Every query shape the orders list sends can use an index at 100,000 orders.

The SQL is not copied here: fixtures/list_sql.lua prints what scripts/orders/sql.lua builds
for each argument set, and each is EXPLAINed as the service runs it (a prepared statement, after
five executions: the plan PostgreSQL settles on) against 100,000 generated orders. A text search
first runs orders.sql.SKU_LOOKUP against the same data, as the handler does, and its answer
picks the search's form.

Two checks per shape:
  - with the planner's default costs, no Seq Scan on ordersapp_order / ordersapp_orderitem for
    the selective shapes (a customer, a product, a SKU, a search, a rare status, a date range,
    and the first page of every sort: a LIMIT walks an index);
  - with enable_seqscan = off, no Seq Scan for ANY shape, i.e. an index path exists for every
    table access. That is the honest check for the unselective shapes (no filter, a common
    status): they must count every matching row, and reading 100,000 rows in a sequential
    pass is the planner's right choice there; what matters is that it is not the only one.
"""
import json
import subprocess
import unittest

from harness import SOURCE_DIR, fresh_database, psql, run_binary

N_ORDERS = 100_000

GENERATE = f"""
INSERT INTO ordersapp_order (order_id, customer_id, order_status, payment_status, shipping_status,
                             order_total, created_at, updated_at)
SELECT g, 1 + g % 5000,
       CASE WHEN g % 50 = 0 THEN 'PENDING' WHEN g % 50 = 1 THEN 'CONFIRMED'
            WHEN g % 50 = 2 THEN 'SHIPPED' WHEN g % 50 < 6 THEN 'CANCELLED' ELSE 'DELIVERED' END,
       CASE WHEN g % 50 = 0 THEN 'PENDING' WHEN g % 50 < 6 AND g % 50 > 2 THEN 'FAILED'
            ELSE 'PAID' END,
       CASE WHEN g % 50 = 0 THEN 'Pending' WHEN g % 50 = 1 THEN 'Pending'
            WHEN g % 50 = 2 THEN 'Shipped' WHEN g % 50 < 6 THEN 'Cancelled' ELSE 'Delivered' END,
       (g % 100000) / 100.0 + 50,
       timestamptz '2022-01-01 00:00:00+00' + g * interval '15 minutes',
       timestamptz '2022-01-01 00:00:00+00' + g * interval '15 minutes'
  FROM generate_series(1, {N_ORDERS}) AS g;
INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
SELECT 1 + g / 2, 1 + (g * 7919) % 2000, 'SKU' || lpad(((g * 7919) % 2000 + 1)::text, 5, '0'),
       1 + g % 3, (g % 5000) / 100.0
  FROM generate_series(0, {2 * N_ORDERS - 1}) AS g;
SELECT setval('ordersapp_order_order_id_seq', {N_ORDERS});
"""

# argument sets as orders.input would produce them (search already split)
SELECTIVE = {
    "customer": {"customer_id": 42},
    "customer_status_by_total": {"customer_id": 42, "order_status": "DELIVERED",
                                 "sort": "order_total", "dir": "asc"},
    "history_defaults": {"customer_id": 42, "page_size": 10},
    "history_filters": {"customer_id": 42, "order_status": "SHIPPED", "payment_status": "PAID",
                        "shipping_status": "Shipped", "sort": "order_total", "dir": "desc",
                        "page": 2, "page_size": 10},
    "product": {"product_id": 77},
    "sku": {"sku": "SKU00077"},
    "search_number": {"search": {"number": 1234}},
    "search_text": {"search": {"pattern": "%sku01234%"}},
    "search_text_customer": {"customer_id": 42, "search": {"pattern": "%0123%"}},
    "rare_status": {"order_status": "PENDING"},
    "rare_payment": {"payment_status": "PENDING", "sort": "order_total"},
    "date_range": {"created_from": "2023-03-01T00:00:00+00:00",
                   "created_before": "2023-03-08T00:00:00+00:00"},
    "date_range_inclusive": {"created_from": "2023-03-01T00:00:00+00:00",
                             "created_to": "2023-03-01T12:00:00+00:00", "dir": "asc"},
    # issue 14: the count stops at 1,001 matches, so even the broadest search (every order)
    # is cheap; keyset pages (`after`) start inside the sort's index
    "broadest_text": {"search": {"pattern": "%sku%"}},
    "keyset_customer": {"customer_id": 42, "after": 50000},
    "keyset_search": {"search": {"pattern": "%sku0%"}, "after": 50000},
}
# the index each keyset shape's page must start from (its row comparison as an Index Cond)
KEYSET_INDEX = {
    "keyset_created": "ordersapp_order_created_idx",
    "keyset_created_asc": "ordersapp_order_created_idx",
    "keyset_total": "ordersapp_order_total_idx",
    "keyset_id": "ordersapp_order_pkey",
    "keyset_customer": "ordersapp_order_customer_created_idx",
    "keyset_search": "ordersapp_order_created_idx",
}
UNSELECTIVE = {
    "everything": {},
    "everything_by_total": {"sort": "order_total", "dir": "asc"},
    "everything_by_id": {"sort": "order_id", "dir": "asc", "page": 40},
    "common_status": {"order_status": "DELIVERED", "page_size": 100},
    "deep_page": {"page": 2000},
    # unfiltered keyset pages: the page starts inside the index (a keyset page is not counted)
    "keyset_created": {"after": 50000},
    "keyset_created_asc": {"after": 50000, "dir": "asc"},
    "keyset_total": {"after": 50000, "sort": "order_total"},
    "keyset_id": {"after": 50000, "sort": "order_id", "dir": "asc"},
    "short_text": {"search": {"pattern": "%1%"}},
    # 10 SKUs, 1 % of the orders: the SKU list, whose count hashes them
    "ten_skus_text": {"search": {"pattern": "%sku0123%"}},
    # 40 SKUs: more than the list takes, fewer than 1 in 20: the plain pattern
    "mid_text": {"search": {"pattern": "%99%"}},
}
# the form SKU_LOOKUP's answer gives each text search: "sku" (one), "skus" (a list), "broad", or
# "pattern" (in between); and the index that form must use (None: the planner's choice)
SKU_IDX, ITEMS_BY_ORDER = "ordersapp_orderitem_sku_idx", "ordersapp_orderitem_order_id_sku_idx"
TEXT_FORM = {
    "search_text": ("sku", SKU_IDX),
    # 10 SKUs on 1 % of the orders: the page's 21 and the count's 101 (a text search counts to
    # 100) are found sooner walking the orders and testing each one's items than by fetching
    # the SKUs' 1,000 items
    "ten_skus_text": ("skus", ITEMS_BY_ORDER),
    # a customer's 20 orders: testing each one's items beats fetching the SKU's
    "search_text_customer": ("skus", "ordersapp_order_customer_created_idx"),
    # the orders in the page's order, each one's items by order_id, the SKU in the index
    "broadest_text": ("broad", ITEMS_BY_ORDER),
    "keyset_search": ("broad", ITEMS_BY_ORDER),
    "short_text": ("broad", ITEMS_BY_ORDER),
    "mid_text": ("pattern", None),
}
TABLES = {"ordersapp_order", "ordersapp_orderitem"}


def literal(value):
    return "'" + value.replace("'", "''") + "'"


def luajit(*args):
    return subprocess.run(["luajit", *args], cwd=SOURCE_DIR, check=True, capture_output=True,
                          text=True).stdout


SKU_LOOKUP = luajit("-e", 'package.path = "scripts/?.lua;" .. package.path'
                          ' io.write(require("orders.sql").SKU_LOOKUP)')


def sku_lookup(url, pattern):
    """SKU_LOOKUP's row for pattern, as the handler gets it (skus None for NULL)."""
    out = psql(url, f"PREPARE l(text) AS {SKU_LOOKUP}; EXECUTE l({literal(pattern)})")
    matched, broad, skus, sku = out.split("|")
    return {"matched": int(matched), "broad": broad == "t", "skus": skus or None, "sku": sku or None}


def list_sql(arg_sets, url):
    """The list's SQL for each argument set; a text search's completed by SKU_LOOKUP on url."""
    sets = []
    for args in arg_sets:
        pattern = args.get("search", {}).get("pattern")
        if pattern:
            args = dict(args, search=dict(args["search"], lookup=sku_lookup(url, pattern)))
        sets.append(args)
    return json.loads(luajit("tests/integration/fixtures/list_sql.lua", json.dumps(sets)))


def seq_scans(plan, found=None):
    found = [] if found is None else found
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in TABLES:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        seq_scans(child, found)
    return found


def index_conds(plan, found=None):
    """(index name, index condition) of every index scan in the plan."""
    found = [] if found is None else found
    if "Index Name" in plan:
        found.append((plan["Index Name"], plan.get("Index Cond", "")))
    for child in plan.get("Plans", []):
        index_conds(child, found)
    return found


def count_limits(plan, under_count=False, found=None):
    """The Limit nodes under the count(*) aggregate."""
    found = [] if found is None else found
    if plan.get("Node Type") == "Limit" and under_count:
        found.append(plan)
    under = under_count or (plan.get("Node Type") == "Aggregate" and "count(*)" in
                            " ".join(plan.get("Output", [])))
    for child in plan.get("Plans", []):
        count_limits(child, under, found)
    return found


class OrdersExplainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("orders_explain")
        r = run_binary("migrate", env={"DATABASE_URL": cls.url})
        assert r.returncode == 0, r.stderr
        psql(cls.url, GENERATE)
        psql(cls.url, "VACUUM ANALYZE ordersapp_order")
        psql(cls.url, "VACUUM ANALYZE ordersapp_orderitem")
        psql(cls.url, "VACUUM ANALYZE order_skus")  # the lookup's limit reads its row count

    def explain(self, shape, settings=""):
        """The plan the service settles on for the shape: its statement is prepared on the
        connection (lib/db.lua), and after five executions PostgreSQL keeps to a generic plan
        when that costs no more than the custom ones (plan_cache_mode = auto)."""
        params = ", ".join(literal(p) for p in shape["params"])
        script = (f"{settings} PREPARE q AS {shape['sql']};\n\\o /dev/null\n"
                  + f"EXECUTE q({params});\n" * 5
                  + f"\\o\nEXPLAIN (FORMAT JSON) EXECUTE q({params});\n")
        out = subprocess.run(["psql", self.url, "-v", "ON_ERROR_STOP=1", "-qAt", "-f", "-"], input=script,
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]["Plan"]

    def test_the_data_is_there(self):
        self.assertEqual(str(N_ORDERS), psql(self.url, "SELECT count(*) FROM ordersapp_order"))

    def test_selective_shapes_use_indexes_by_default(self):
        names = list(SELECTIVE)
        for name, shape in zip(names, list_sql([SELECTIVE[n] for n in names], self.url)):
            with self.subTest(shape=name):
                plan = self.explain(shape)
                self.assertEqual([], seq_scans(plan), json.dumps(plan, indent=1))

    def test_every_shape_has_an_index_path(self):
        sets = dict(SELECTIVE, **UNSELECTIVE)
        names = list(sets)
        for name, shape in zip(names, list_sql([sets[n] for n in names], self.url)):
            with self.subTest(shape=name):
                plan = self.explain(shape, "SET enable_seqscan = off;")
                self.assertEqual([], seq_scans(plan), json.dumps(plan, indent=1))

    def test_keyset_pages_start_inside_the_sorts_index(self):
        names = list(KEYSET_INDEX)
        sets = dict(SELECTIVE, **UNSELECTIVE)
        for name, shape in zip(names, list_sql([sets[n] for n in names], self.url)):
            with self.subTest(shape=name):
                plan = self.explain(shape)
                conds = [c for c in index_conds(plan) if c[0] == KEYSET_INDEX[name]]
                self.assertTrue(any("$" in cond or "ROW(" in cond or "order_id >" in cond
                                    for _, cond in conds), json.dumps(plan, indent=1))

    def test_the_count_stops_at_the_limit(self):
        # the broadest shapes: without the LIMIT the count reads every match; a text search
        # counts to 100, the rest to 1,000 (orders.sql.count_limit)
        for (name, limit), shape in zip((("broadest", 101), ("everything", 1001)),
                                        list_sql([SELECTIVE["broadest_text"], {}], self.url)):
            with self.subTest(shape=name):
                out = psql(self.url, f"PREPARE q AS {shape['sql']}; EXPLAIN (ANALYZE, VERBOSE,"
                                     " FORMAT JSON) EXECUTE q("
                                     + ", ".join(literal(p) for p in shape["params"]) + ")")
                plan = json.loads(out)[0]["Plan"]
                limits = count_limits(plan)
                self.assertTrue(limits, json.dumps(plan, indent=1))
                self.assertEqual(limit, limits[0]["Actual Rows"])

    def test_the_exact_sku_filter_uses_the_btree_index(self):
        # not the trigram index, which must intersect trigrams every SKU shares (migration 0007)
        shape, = list_sql([SELECTIVE["sku"]], self.url)
        plan = self.explain(shape)
        names = {name for name, _ in index_conds(plan)}
        self.assertIn("ordersapp_orderitem_sku_idx", names, json.dumps(plan, indent=1))
        self.assertNotIn("ordersapp_orderitem_sku_trgm_idx", names)

    def test_each_text_search_form_uses_its_index(self):
        sets = dict(SELECTIVE, **UNSELECTIVE)
        names = list(TEXT_FORM)
        for name, shape in zip(names, list_sql([sets[n] for n in names], self.url)):
            with self.subTest(shape=name):
                sql, (form, index) = shape["sql"], TEXT_FORM[name]
                self.assertEqual(form == "sku", "i.sku = $" in sql)
                self.assertEqual(form == "skus", "i.sku = ANY($" in sql)
                self.assertEqual(form == "broad", "IS DISTINCT FROM false" in sql)
                plan = self.explain(shape)
                used = {name for name, _ in index_conds(plan)}
                if index:
                    self.assertIn(index, used, json.dumps(plan, indent=1))
                # never the trigram index, whose posting lists are as long as the table
                self.assertNotIn("ordersapp_orderitem_sku_trgm_idx", used)

    def test_first_pages_walk_an_index_without_sorting_everything(self):
        # the page itself (not the count) of an unfiltered list must come from an index
        for name, shape in zip(("created", "total", "id"),
                               list_sql([{}, {"sort": "order_total"}, {"sort": "order_id"}], self.url)):
            with self.subTest(sort=name):
                plan = self.explain(shape)
                text = json.dumps(plan)
                self.assertIn("Index Scan", text)


if __name__ == "__main__":
    unittest.main()
