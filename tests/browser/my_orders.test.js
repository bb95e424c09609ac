// The My Orders page and the API reference in headless Chromium (issue 11): a seed customer's
// history checked against the database, search, status filter, sort by total, pages that keep
// the filters, a cancellation, the timeline, errors, a hostile search string,
// a phone-sized screen and the keyboard; then /orders-doc/ with every operation and one
// "Try it out". Every request the browser makes is recorded: none may leave the service's origin.
// Screenshots go to $BROWSER_ARTIFACTS (the build tree's browser-artifacts/).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const lib = require('./lib');

const CUSTOMER = 55; // the seed customer with the most orders (11: two pages of 10)
const HOSTILE = '<script>window.__pwned=1</script>"\'><img src=x onerror="window.__pwned=2">';

let db; let svc; let standins; let browser; let context; let page;
let customerToken; let adminToken;
const requests = [];   // every URL any page asked for
const cspErrors = [];  // console messages about a Content-Security-Policy violation
const pageErrors = []; // uncaught exceptions in the pages

function watch(p) {
  p.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspErrors.push(m.text()); });
  p.on('pageerror', (e) => pageErrors.push(e.message));
}

function historyUrl(query = '') {
  return `${svc.url}/v1/orders/my-orders/${CUSTOMER}/${query}`;
}

// The page has finished loading its data (aria-busy goes false when the answer is rendered).
async function loaded(p = page) {
  await p.waitForFunction(() => document.getElementById('orders').getAttribute('aria-busy') === 'false');
}

async function shownIds(p = page) {
  return p.$$eval('article.order', (els) => els.map((e) => e.dataset.orderId));
}

// The customer's order ids as the database orders them (ties by order_id, as the API does).
function dbIds(where, orderBy, limit = 10, offset = 0) {
  return lib.rows(db, `SELECT order_id FROM ordersapp_order WHERE customer_id = ${CUSTOMER} ${where ? 'AND ' + where : ''}
                        ORDER BY ${orderBy} LIMIT ${limit} OFFSET ${offset}`).map((r) => r[0]);
}

async function apply() {
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Apply' }).click()]);
  await loaded();
}

test.before(async () => {
  db = lib.freshDatabase('browser_my_orders');
  lib.run(['migrate'], { DATABASE_URL: db });
  lib.run(['seed'], { DATABASE_URL: db });
  const s = await lib.startStandins();
  standins = s.standins;
  svc = await lib.startService({ DATABASE_URL: db, ...s.env });
  customerToken = lib.token(String(CUSTOMER), 'customer', CUSTOMER);
  adminToken = lib.token('browser-admin', 'admin');
  browser = await lib.launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.on('request', (r) => requests.push(r.url()));
  page = await context.newPage();
  watch(page);
});

test.after(async () => {
  if (browser) await browser.close();
  if (svc) await svc.stop();
  if (standins) await standins.stop();
});

test('without a token the page asks for one; with it, it shows the orders the database has', async () => {
  await page.goto(historyUrl());
  assert.equal(await page.title(), 'My Orders');
  await page.waitForSelector('#signin:not([hidden])');
  assert.match(await page.textContent('#error'), /401/);

  await page.getByLabel('Access token').fill(customerToken);
  await page.getByRole('button', { name: 'Use this token' }).click();
  await page.waitForSelector('article.order');
  await loaded();
  assert.equal(await page.isHidden('#signin'), true);

  const expected = dbIds('', 'created_at DESC, order_id DESC');
  assert.deepEqual(await shownIds(), expected);
  assert.match(await page.textContent('#page-info'), /Page 1 of 2 \(11 orders\)/);

  // Each card against its row and items.
  const orders = new Map(lib.rows(db, `SELECT order_id, order_status, payment_status, shipping_status, order_total,
                                              to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                                         FROM ordersapp_order WHERE customer_id = ${CUSTOMER}`).map((r) => [r[0], r]));
  const cards = await page.$$eval('article.order', (els) => els.map((e) => ({
    id: e.dataset.orderId,
    badges: [...e.querySelectorAll('.badge')].map((b) => b.textContent),
    total: e.querySelector('.amount').textContent,
    day: e.closest('section.day').dataset.day,
    skus: [...e.querySelectorAll('tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
  })));
  for (const c of cards) {
    const [, status, payment, shipping, total, day] = orders.get(c.id);
    assert.deepEqual(c.badges, [`Order: ${status}`, `Payment: ${payment}`, `Shipping: ${shipping}`], c.id);
    assert.equal(c.total, total, c.id);
    assert.equal(c.day, day, `order ${c.id} is under its own day`);
    const items = lib.rows(db, `SELECT product_id, sku, quantity, unit_price FROM ordersapp_orderitem
                                 WHERE order_id = ${c.id} ORDER BY order_item_id`);
    assert.deepEqual(c.skus, items, `items of ${c.id}`);
  }
  // Grouped by date, newest first: the day headings descend and never repeat.
  const days = await page.$$eval('section.day', (els) => els.map((e) => e.dataset.day));
  assert.deepEqual(days, [...new Set(days)].sort().reverse());
  await page.screenshot({ path: lib.artifact('my-orders-desktop.png'), fullPage: true });
});

test('search by SKU shows exactly the orders with such an item', async () => {
  const [sku] = lib.rows(db, `SELECT i.sku FROM ordersapp_orderitem i JOIN ordersapp_order o USING (order_id)
                               WHERE o.customer_id = ${CUSTOMER} ORDER BY i.sku LIMIT 1`)[0];
  await page.getByLabel('Search').fill(sku.toLowerCase()); // case-insensitive
  await apply();
  assert.match(page.url(), new RegExp(`search=${sku.toLowerCase()}`));
  const expected = dbIds(`order_id IN (SELECT order_id FROM ordersapp_orderitem WHERE sku ILIKE '%${sku}%')`,
    'created_at DESC, order_id DESC');
  assert.ok(expected.length >= 1);
  assert.deepEqual(await shownIds(), expected);
  assert.equal(await page.inputValue('#search'), sku.toLowerCase(), 'the box keeps what was searched');

  // By order id too.
  await page.getByLabel('Search').fill(expected[0]);
  await apply();
  assert.deepEqual(await shownIds(), [expected[0]]);
});

test('filter by order status', async () => {
  await page.goto(historyUrl());
  await loaded();
  await page.getByLabel('Order status').selectOption('CANCELLED');
  await apply();
  const expected = dbIds(`order_status = 'CANCELLED'`, 'created_at DESC, order_id DESC');
  assert.ok(expected.length >= 2);
  assert.deepEqual(await shownIds(), expected);
  const badges = await page.$$eval('.badge-order', (els) => els.map((e) => e.textContent));
  assert.ok(badges.every((b) => b === 'Order: CANCELLED'), badges.join());

  // A filter nothing matches: the empty state.
  await page.getByLabel('Shipping status').selectOption('Shipped');
  await apply();
  assert.equal(await page.isVisible('#empty'), true);
  assert.match(await page.textContent('#empty'), /No order matches these filters/);
  assert.equal(await page.locator('article.order').count(), 0);
});

test('sort by total, both ways', async () => {
  await page.goto(historyUrl());
  await loaded();
  await page.getByLabel('Sort by').selectOption('Total');
  await page.getByLabel('Direction').selectOption('Ascending');
  await apply();
  assert.deepEqual(await shownIds(), dbIds('', 'order_total ASC, order_id ASC'));
  const totals = (await page.$$eval('.amount', (els) => els.map((e) => Number(e.textContent))));
  assert.deepEqual(totals, [...totals].sort((a, b) => a - b));

  await page.getByLabel('Direction').selectOption('Descending');
  await apply();
  assert.deepEqual(await shownIds(), dbIds('', 'order_total DESC, order_id DESC'));
});

test('pages keep the filters, the sort and the page size', async () => {
  await page.goto(historyUrl('?status_filter=CANCELLED&sort_by=Total&sort_dir=Ascending&page_size=3'));
  await loaded();
  const where = `order_status = 'CANCELLED'`;
  const order = 'order_total ASC, order_id ASC';
  assert.deepEqual(await shownIds(), dbIds(where, order, 3, 0));
  assert.equal(await page.isVisible('#prev'), false, 'no previous page on page 1');

  await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'Next page' }).click()]);
  await loaded();
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('page'), '2');
  assert.equal(url.searchParams.get('status_filter'), 'CANCELLED');
  assert.equal(url.searchParams.get('sort_by'), 'Total');
  assert.equal(url.searchParams.get('page_size'), '3');
  assert.deepEqual(await shownIds(), dbIds(where, order, 3, 3));
  assert.equal(await page.inputValue('#status_filter'), 'CANCELLED', 'the form shows the filters in force');
  assert.equal(await page.inputValue('#sort_by'), 'Total');

  await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'Previous page' }).click()]);
  await loaded();
  assert.deepEqual(await shownIds(), dbIds(where, order, 3, 0));
});

test('a text search past its count shows "100+" and pages on by the next link', async () => {
  // another customer, so the seed customer's pages above and below stay as they are
  const other = 9100;
  lib.psql(db, `WITH o AS (INSERT INTO ordersapp_order (customer_id, order_status, payment_status, shipping_status,
                                                      order_total, created_at)
                          SELECT ${other}, 'DELIVERED', 'PAID', 'Delivered', 10.00, now() - g * interval '1 minute'
                            FROM generate_series(1, 105) AS g RETURNING order_id)
                INSERT INTO ordersapp_orderitem (order_id, product_id, sku, quantity, unit_price)
                SELECT order_id, 5, 'CAP-' || order_id, 1, 10.00 FROM o`);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  ctx.on('request', (r) => requests.push(r.url()));
  const p = await ctx.newPage();
  watch(p);
  await p.goto(`${svc.url}/v1/orders/my-orders/${other}/?search=cap-&page_size=50`);
  await p.waitForSelector('#signin:not([hidden])');
  await p.getByLabel('Access token').fill(lib.token(String(other), 'customer', other));
  await p.getByRole('button', { name: 'Use this token' }).click();
  await p.waitForSelector('article.order');
  await loaded(p);
  // a text search counts to 100 (docs/orders-api.md): the page count is unknown, not "2"
  assert.equal((await p.textContent('#page-info')).trim(), 'Page 1 (100+ orders)');
  for (const [n, shown, more] of [[2, 50, true], [3, 5, false]]) {
    await Promise.all([p.waitForNavigation(), p.getByRole('link', { name: 'Next page' }).click()]);
    await loaded(p);
    assert.equal(new URL(p.url()).searchParams.get('page'), String(n));
    assert.equal((await shownIds(p)).length, shown);
    assert.equal(await p.isVisible('#next'), more, `a next link on page ${n}: ${more}`);
  }
  await ctx.close();
});

test('cancel a cancellable order and see it cancelled; others offer no cancel', async () => {
  await page.goto(historyUrl());
  await loaded();
  const [id] = dbIds(`order_status IN ('PENDING', 'CONFIRMED')`, 'created_at DESC, order_id DESC', 1);
  assert.ok(id, 'the seed customer has a cancellable order');
  const card = page.locator(`article[data-order-id="${id}"]`);
  const cancelled = page.locator(`article[data-order-id="${id}"] .badge-order`);
  page.once('dialog', (d) => d.accept());
  await card.getByRole('button', { name: `Cancel order ${id}` }).click();
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === 'Order: CANCELLED',
    `article[data-order-id="${id}"] .badge-order`);
  assert.equal(await cancelled.textContent(), 'Order: CANCELLED');
  assert.match(await page.textContent('#status'), new RegExp(`Order #${id} is now CANCELLED`));
  assert.equal(lib.psql(db, `SELECT order_status FROM ordersapp_order WHERE order_id = ${id}`), 'CANCELLED');
  assert.equal(await card.getByRole('button', { name: /Cancel order/ }).count(), 0, 'no second cancel');
  const delivered = dbIds(`order_status = 'DELIVERED'`, 'order_id', 1)[0];
  assert.equal(await page.locator(`article[data-order-id="${delivered}"] button.danger`).count(), 0);

  // The timeline shows every event the API lists for the order, the cancellation among them.
  const api = await fetch(`${svc.url}/v1/orders/${id}/events/`, { headers: { Authorization: `Bearer ${adminToken}` } });
  assert.equal(api.status, 200);
  const { events } = await api.json();
  const button = card.getByRole('button', { name: 'Show timeline' });
  await button.click();
  assert.equal(await card.getByRole('button', { name: 'Hide timeline' }).getAttribute('aria-expanded'), 'true');
  const lines = card.locator('.timeline ol.events li');
  await lines.nth(events.length - 1).waitFor();
  assert.equal(await lines.count(), events.length);
  assert.match(await card.locator('.timeline').textContent(), /order status: \w+ → CANCELLED/);
  assert.equal(await page.isHidden('#error'), true, 'no error shown');
});

test('API errors are shown, not swallowed', async () => {
  await page.goto(historyUrl('?page_size=1000'));
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await page.textContent('#error'), /Error 400: page_size must be an integer from 1 to 100 \(page_size\)/);
  assert.equal(await page.getAttribute('#error', 'role'), 'alert');
});

test('a hostile search string stays text', async () => {
  let dialogs = 0;
  const onDialog = (d) => { dialogs += 1; d.dismiss(); };
  page.on('dialog', onDialog);
  await page.goto(historyUrl('?search=' + encodeURIComponent(HOSTILE)));
  await loaded();
  page.off('dialog', onDialog);
  assert.equal(await page.inputValue('#search'), HOSTILE, 'shown as typed, in the search box');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(dialogs, 0);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.equal(await page.locator('script:not([src])').count(), 0);
  assert.equal(await page.isVisible('#empty'), true, 'nothing matches it');
});

test('keyboard: labelled controls in a sensible focus order, visible focus, readable contrast', async () => {
  await page.goto(historyUrl());
  await loaded();
  const unlabelled = await page.$$eval('input:not([type=hidden]), select, button',
    (els) => els.filter((e) => e.offsetParent !== null && e.labels?.length === 0 && !e.textContent.trim() &&
                                 !e.getAttribute('aria-label')).map((e) => e.id || e.outerHTML));
  assert.deepEqual(unlabelled, []);
  const order = [];
  for (let i = 0; i < 11; i++) {
    await page.keyboard.press('Tab');
    order.push(await page.evaluate(() => {
      const e = document.activeElement;
      return e.id || e.textContent.trim();
    }));
  }
  assert.deepEqual(order.slice(0, 11), ['Skip to the orders', 'signout', 'search', 'status_filter', 'payment_filter',
    'shipping_filter', 'sort_by', 'sort_dir', 'Apply', 'clear', 'Show timeline']);
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused control is visibly marked');
  // The skip link moves focus to the orders.
  await page.keyboard.press('Shift+Tab');
  await page.focus('.skip');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'orders');
  // WCAG AA: every badge and the muted text reach 4.5:1 against what is behind them.
  const worst = await page.evaluate(() => {
    const rgb = (s) => s.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
    const lum = (c) => {
      const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    let min = Infinity;
    for (const e of document.querySelectorAll('.badge, .muted, label, button, .pager a')) {
      let bg = e; let color = 'rgba(0, 0, 0, 0)';
      while (bg && (color = getComputedStyle(bg).backgroundColor) === 'rgba(0, 0, 0, 0)') bg = bg.parentElement;
      min = Math.min(min, ratio(rgb(getComputedStyle(e).color), rgb(bg ? color : 'rgb(255,255,255)')));
    }
    return min;
  });
  assert.ok(worst >= 4.5, `lowest contrast ${worst.toFixed(2)}:1`);
});

test('on a phone: a token link, no sideways scrolling, everything reachable', async () => {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true,
    hasTouch: true });
  phone.on('request', (r) => requests.push(r.url()));
  const p = await phone.newPage();
  watch(p);
  // The #token= fragment: never sent to a server, taken into this tab's storage, then dropped.
  await p.goto(historyUrl(`#token=${customerToken}`));
  await p.waitForSelector('article.order');
  await loaded(p);
  assert.equal(new URL(p.url()).hash, '', 'the token left the address bar');
  assert.equal(await p.evaluate(() => sessionStorage.getItem('orderservice.token') !== null), true);
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  const small = await p.$$eval('button, select, input', (els) => els.filter((e) => e.offsetParent !== null &&
    e.getBoundingClientRect().height < 40).map((e) => e.id || e.textContent));
  assert.deepEqual(small, [], 'controls big enough to tap');
  await p.screenshot({ path: lib.artifact('my-orders-phone.png'), fullPage: true });
  await phone.close();
});

test('/orders-doc/: every operation listed, and "Try it out" runs one', async () => {
  const doc = await (await fetch(svc.url + '/orders-doc/openapi.json')).json();
  const ops = Object.entries(doc.paths).flatMap(([p, o]) => Object.keys(o).map((m) => `${m.toUpperCase()} ${p}`));
  await page.goto(svc.url + '/orders-doc/');
  await page.waitForSelector('.opblock');
  const shown = await page.$$eval('.opblock', (els) => els.map((e) =>
    `${e.querySelector('.opblock-summary-method').textContent} ${e.querySelector('.opblock-summary-path').dataset.path}`));
  assert.deepEqual([...shown].sort(), [...ops].sort());
  await page.screenshot({ path: lib.artifact('orders-doc.png') });

  // Authorize with the customer's token and run the history from the page.
  await page.getByRole('button', { name: 'Authorize' }).first().click();
  await page.locator('.modal-ux input[type=text], .modal-ux input[type=password]').first().fill(customerToken);
  await page.locator('.modal-ux button.authorize').click();   // its accessible name is "Apply credentials"
  await page.locator('.modal-ux button.btn-done').click();
  const op = page.locator('#operations-orders-orders_history');
  await op.locator('.opblock-summary').click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  await op.locator('input[placeholder="customer_id"]').fill(String(CUSTOMER));
  await op.getByRole('button', { name: 'Execute' }).click();
  const status = op.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor();
  assert.equal((await status.textContent()).trim(), '200');
  // Swagger UI fills the query parameters with their examples: the answer must be what the API
  // gives for the very URL it shows.
  const requestUrl = (await op.locator('.request-url pre').first().textContent()).trim();
  assert.ok(requestUrl.startsWith(`${svc.url}/v1/orders/my-orders/${CUSTOMER}/`), requestUrl);
  const direct = await (await fetch(requestUrl, { headers: { Authorization: `Bearer ${customerToken}` } })).json();
  const body = JSON.parse((await op.locator('.live-responses-table .highlight-code').first().textContent())
    .replace(/^Download/, ''));
  assert.deepEqual(body, direct);
  await page.screenshot({ path: lib.artifact('orders-doc-try-it-out.png'), fullPage: false });
});

test('no request left the service, no CSP violation, no script error', () => {
  const origin = new URL(svc.url).origin;
  const foreign = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('data:'));
  assert.deepEqual(foreign, []);
  assert.ok(requests.some((u) => u.includes('/static/my-orders/my-orders.js')));
  assert.ok(requests.some((u) => u.includes('/orders-doc/ui/swagger-ui-bundle.js')));
  assert.deepEqual(cspErrors, []);
  assert.deepEqual(pageErrors, []);
});
