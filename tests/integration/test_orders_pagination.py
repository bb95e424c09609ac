"""Lists past the count limit (issue 14): the count stops at 1,000 (a text search at 100), keyset pages (`after`)
walk the same orders as page numbers, and `next` links past the counted orders are keyset
links. docs/orders-api.md, "Lists and pagination", is the contract.

One database with 1,250 orders of one customer, made in SQL (no saga needed), with created_at
ties and total ties so the tie-breaks are exercised; no stand-ins. Their items carry about 1,050
distinct SKUs, so a text search takes each of its forms (orders.sql, "the text search").
"""
import subprocess
import unittest
from urllib.parse import parse_qs, quote, urlsplit

from harness import SOURCE_DIR, Service, fresh_database, psql, run_binary

CUSTOMER = 77
N = 1250
COUNT_LIMIT = 1000
SEARCH_COUNT_LIMIT = 100  # a text search's count (orders.sql.count_limit)

GENERATE = f"""
INSERT INTO ordersapp_order (customer_id, order_status, payment_status, shipping_status,
                             order_total, created_at)
SELECT {CUSTOMER}, 'DELIVERED', 'PAID', 'Delivered', (g % 97) + 0.5,
       timestamptz '2024-01-01 00:00:00+00' + (g / 3) * interval '1 minute'
  FROM generate_series(1, {N}) AS g;
INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
SELECT order_id, 5, 'PAGE-' || (order_id % 7), 1, 1.00
  FROM ordersapp_order WHERE customer_id = {CUSTOMER};
-- 1,000 SKUs, one per order (mod 1,000), and 40 more on every 25th order
INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
SELECT order_id, 6, 'ITEM-A' || lpad((order_id % 1000)::text, 3, '0'), 1, 1.00
  FROM ordersapp_order WHERE customer_id = {CUSTOMER};
INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
SELECT order_id, 7, 'MID_' || lpad((order_id / 25 % 40)::text, 2, '0'), 1, 1.00
  FROM ordersapp_order WHERE customer_id = {CUSTOMER} AND order_id % 25 = 0;
ANALYZE order_skus;
"""
SKU_LOOKUP = subprocess.run(["luajit", "-e", 'package.path = "scripts/?.lua;" .. package.path'
                                             ' io.write(require("orders.sql").SKU_LOOKUP)'],
                            cwd=SOURCE_DIR, check=True, capture_output=True, text=True).stdout


class OrdersPaginationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("orders_pagination")
        r = run_binary("migrate", env={"DATABASE_URL": cls.url})
        assert r.returncode == 0, r.stderr
        psql(cls.url, GENERATE)
        cls.svc = Service(database_url=cls.url, workers=1).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def get(self, path, expect=200):
        r = self.svc.request("GET", path)
        self.assertEqual(expect, r.status, r.body)
        return r.json()

    def walk(self, first):
        """Follows `next` from `first` to the end; returns the ids and the pages seen."""
        ids, pages, path = [], [], first
        while path:
            body = self.get(path)
            ids += [o["order_id"] for o in body["results"]]
            pages.append(body)
            path = body["next"]
        return ids, pages

    def expected(self, order_by):
        out = psql(self.url, f"SELECT string_agg(order_id::text, ',' ORDER BY {order_by})"
                             f" FROM ordersapp_order WHERE customer_id = {CUSTOMER}")
        return [int(x) for x in out.split(",")]

    def test_the_count_stops_at_the_limit_and_says_so(self):
        body = self.get(f"/v1/orders/?customer_id={CUSTOMER}")
        self.assertEqual((COUNT_LIMIT, True), (body["count"], body["count_capped"]))
        # a text search counts to SEARCH_COUNT_LIMIT: PAGE-3 is on 1 order in 7 (~178), MID_ on 50
        body = self.get(f"/v1/orders/?customer_id={CUSTOMER}&search=PAGE-3")
        exact = int(psql(self.url, f"SELECT count(*) FROM ordersapp_order WHERE customer_id = {CUSTOMER}"
                                   f" AND order_id % 7 = 3"))
        self.assertGreater(exact, SEARCH_COUNT_LIMIT)
        self.assertEqual((SEARCH_COUNT_LIMIT, True), (body["count"], body["count_capped"]))
        self.assertIsNotNone(body["next"])
        body = self.get(f"/v1/orders/?customer_id={CUSTOMER}&search=MID_")
        exact = int(psql(self.url, f"SELECT count(*) FROM ordersapp_order WHERE customer_id = {CUSTOMER}"
                                   f" AND order_id % 25 = 0"))
        self.assertEqual(exact, body["count"])
        self.assertNotIn("count_capped", body)
        # a number search counts to COUNT_LIMIT, as the other filters do
        body = self.get(f"/v1/orders/?search={CUSTOMER}")
        self.assertEqual((COUNT_LIMIT, True), (body["count"], body["count_capped"]))

    def test_following_next_walks_every_order_once_in_order(self):
        for query, order_by in (("", "created_at DESC, order_id DESC"),
                                ("&dir=asc", "created_at, order_id"),
                                ("&sort=order_total&dir=asc", "order_total, order_id"),
                                ("&sort=order_total", "order_total DESC, order_id DESC"),
                                ("&sort=order_id", "order_id DESC")):
            with self.subTest(query=query):
                ids, pages = self.walk(f"/v1/orders/?customer_id={CUSTOMER}&page_size=100{query}")
                self.assertEqual(self.expected(order_by), ids)
                # page numbers while the next page starts within the counted orders, then keyset
                numbered = [p for p in pages if p["page"] is not None]
                self.assertEqual(list(range(1, COUNT_LIMIT // 100 + 1)), [p["page"] for p in numbered])
                self.assertIn("after=", numbered[-1]["next"])
                self.assertNotIn("page=", numbered[-1]["next"])
                self.assertTrue(all(p["previous"] is None for p in pages[len(numbered):]))

    def test_keyset_pages_match_page_numbers(self):
        page3 = self.get(f"/v1/orders/?customer_id={CUSTOMER}&page=3&page_size=20")
        page2 = self.get(f"/v1/orders/?customer_id={CUSTOMER}&page=2&page_size=20")
        after = page2["results"][-1]["order_id"]
        keyset = self.get(f"/v1/orders/?customer_id={CUSTOMER}&after={after}&page_size=20")
        self.assertEqual([o["order_id"] for o in page3["results"]],
                         [o["order_id"] for o in keyset["results"]])
        # a keyset page is not counted: the walk has its count from its first page
        self.assertEqual((COUNT_LIMIT, None), (page3["count"], keyset["count"]))
        self.assertNotIn("count_capped", keyset)
        self.assertEqual(["after"], [k for k in parse_qs(urlsplit(keyset["next"]).query) if k == "after"])

    def test_the_history_pages_the_same_way(self):
        ids, pages = self.walk(f"/v1/orders/my-orders/{CUSTOMER}/?page_size=100&sort_by=Total")
        self.assertEqual(self.expected("order_total DESC, order_id DESC"), ids)
        self.assertIn("/my-orders/", pages[-2]["next"])

    def test_every_text_search_form_finds_the_orders_ilike_finds(self):
        # (search text, the form SKU_LOOKUP's answer gives it: orders.sql, "the text search")
        for text, form in (("item-a042", "sku"),       # one SKU, another case
                           ("A00", "skus"),            # 10
                           ("MID_", "pattern"),        # 40: more than 32, fewer than 1 in 20
                           ("item-a", "broad"),        # 1,000
                           ("A0", "broad"),            # 100
                           ("page-3", "sku"),         # one SKU on ~178 orders
                           ("M_A", "none"),            # `_` is literal: no SKU has "M_A"
                           ("%", "none"),
                           ("nothing-here", "none")):
            with self.subTest(text=text):
                pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                matched, broad, skus, sku = psql(self.url, f"PREPARE l(text) AS {SKU_LOOKUP};"
                                                           f" EXECUTE l('{pattern}')").split("|")
                got = ("none" if matched == "0" else "sku" if sku else "skus" if skus else
                       "broad" if broad == "t" else "pattern")
                self.assertEqual(form, got)
                expected = psql(self.url, "SELECT string_agg(order_id::text, ',' ORDER BY"
                                          " created_at DESC, order_id DESC) FROM ordersapp_order"
                                          " WHERE order_id IN (SELECT order_id FROM ordersapp_orderitem"
                                          f" WHERE sku ILIKE '{pattern}')")
                expected = [int(x) for x in expected.split(",")] if expected else []
                ids, pages = self.walk(f"/v1/orders/?search={quote(text)}&page_size=100")
                self.assertEqual(expected, ids)
                self.assertEqual(min(len(expected), SEARCH_COUNT_LIMIT), pages[0]["count"])
                self.assertEqual(len(expected) > SEARCH_COUNT_LIMIT, pages[0].get("count_capped", False))

    def test_after_an_unknown_order_is_an_empty_page_and_bad_cursors_are_400(self):
        body = self.get(f"/v1/orders/?customer_id={CUSTOMER}&after=99999999")
        self.assertEqual(([], None), (body["results"], body["next"]))
        for query in ("after=0", "after=x", "after=5&page=2"):
            with self.subTest(query=query):
                r = self.svc.request("GET", f"/v1/orders/?{query}")
                self.assertEqual(400, r.status)
                self.assertEqual("after", r.json()["details"]["field"])


if __name__ == "__main__":
    unittest.main()
