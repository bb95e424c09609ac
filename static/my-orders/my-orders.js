// The "My Orders" page over the JSON API (issue 11). No framework, no third-party code.
//
// Safety: every value from the API or the URL reaches the page through textContent, a text
// node or a form control's value, never innerHTML; the Content-Security-Policy allows no
// inline script anyway.
//
// Tokens (docs/orders-api.md, "The My Orders page"): behind a gateway that adds the
// Authorization header to API calls, the page needs none and never asks. Otherwise a token
// comes from the link's #token=... fragment (never sent to any server, removed from the
// address bar at once) or from the sign-in form, and is kept in sessionStorage: this tab
// only, gone when it closes, sent only to this origin.
'use strict';

(function () {
  const TOKEN_KEY = 'orderservice.token';
  const CANCELLABLE = new Set(['PENDING', 'CONFIRMED']);
  // The history's query arguments (lib/order_input.lua history_args); others are left out.
  const API_ARGS = ['search', 'status_filter', 'payment_filter', 'shipping_filter', 'sort_by', 'sort_dir', 'page', 'page_size'];
  const FORM_ARGS = ['search', 'status_filter', 'payment_filter', 'shipping_filter', 'sort_by', 'sort_dir'];

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const match = location.pathname.match(/\/my-orders\/(\d+)\/?$/);
  const customerId = match ? match[1] : null;

  // el('p', { class: 'x', text: 'y', 'aria-label': 'z' }, child...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    e.append(...children.filter((c) => c !== null && c !== undefined));
    return e;
  }

  // ---- token ----

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }
  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage off: the token lives for this page view only */ }
    memoryToken = t || null;
    $('signout').hidden = !t;
  }
  let memoryToken = null;
  function currentToken() { return token() || memoryToken; }

  function takeFragmentToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const t = fragment.get('token');
    if (t) {
      setToken(t);
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  // ---- API ----

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const t = currentToken();
    if (t) headers.Authorization = 'Bearer ' + t;
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      return { status: 0, ok: false, data: null };
    }
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON: data stays null */ }
    return { status: r.status, ok: r.ok, data };
  }

  function errorText(r) {
    if (r.status === 0) return 'The service could not be reached. Check your connection and try again.';
    const d = r.data || {};
    let text = (typeof d.error === 'string' && d.error) || ('HTTP ' + r.status);
    if (d.details && typeof d.details === 'object' && typeof d.details.field === 'string') text += ' (' + d.details.field + ')';
    else if (typeof d.details === 'string') text += ': ' + d.details;
    if (r.status === 403) text = 'You are not allowed to see or change this: ' + text;
    return 'Error ' + (r.status || '') + ': ' + text;
  }

  function showError(r) {
    const box = $('error');
    if (r.status === 401) {
      showSignin(currentToken() ? 'Your token was refused (' + ((r.data && r.data.details) || 'invalid') + '). Paste a new one.'
        : 'This service needs an access token to show your orders.');
    }
    box.replaceChildren(el('p', { text: errorText(r) }));
    box.hidden = false;
  }
  function clearError() {
    $('error').hidden = true;
    $('error').replaceChildren();
  }
  function say(text) { $('status').textContent = text; }

  function showSignin(why) {
    $('signin-why').textContent = why;
    $('signin').hidden = false;
    $('token').focus();
  }

  // ---- rendering ----

  function badgeClass(kind, value) {
    return 'badge badge-' + kind + ' is-' + String(value).toLowerCase().replace(/[^a-z]/g, '');
  }
  function badge(kind, label, value) {
    return el('li', { class: badgeClass(kind, value) }, el('span', { class: 'badge-kind', text: label + ': ' }), String(value));
  }
  function day(ts) { return String(ts || '').slice(0, 10); }
  function dayLabel(d) {
    const t = Date.parse(d + 'T00:00:00Z');
    if (Number.isNaN(t)) return d || 'Unknown date';
    return new Date(t).toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric', timeZone: 'UTC' });
  }
  function timeLabel(ts) {
    const t = Date.parse(ts);
    if (Number.isNaN(t)) return String(ts || '');
    return new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }) + ' UTC';
  }

  function itemsTable(o) {
    if (!o.items || o.items.length === 0) return el('p', { class: 'muted', text: 'No items recorded.' });
    const body = el('tbody', {});
    for (const it of o.items) {
      body.append(el('tr', {},
        el('td', { text: it.product_id }), el('td', { text: it.sku }),
        el('td', { class: 'num', text: it.quantity }), el('td', { class: 'num', text: it.unit_price })));
    }
    return el('div', { class: 'table-wrap' }, el('table', { class: 'items' },
      el('caption', { class: 'visually-hidden', text: 'Items of order ' + o.order_id }),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Product' }), el('th', { scope: 'col', text: 'SKU' }),
        el('th', { scope: 'col', class: 'num', text: 'Quantity' }), el('th', { scope: 'col', class: 'num', text: 'Price' }))),
      body));
  }

  function orderCard(o) {
    const id = String(o.order_id);
    const headingId = 'order-' + id + '-title';
    const timelineId = 'order-' + id + '-timeline';
    const card = el('article', { class: 'order', 'data-order-id': id, 'aria-labelledby': headingId });
    const timeline = el('div', { id: timelineId, class: 'timeline', hidden: true });
    const actions = el('div', { class: 'order-actions' });
    const timelineButton = el('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-controls': timelineId,
      text: 'Show timeline' });
    timelineButton.addEventListener('click', () => toggleTimeline(o, timelineButton, timeline));
    actions.append(timelineButton);
    if (CANCELLABLE.has(o.order_status)) {
      const cancelButton = el('button', { type: 'button', class: 'danger', text: 'Cancel order',
        'aria-label': 'Cancel order ' + id });
      cancelButton.addEventListener('click', () => cancelOrder(o, card, cancelButton));
      actions.append(cancelButton);
    }
    card.append(
      el('header', { class: 'order-head' },
        el('h3', { id: headingId, tabindex: '-1', text: 'Order #' + id }),
        el('time', { datetime: o.created_at, class: 'muted', text: timeLabel(o.created_at) })),
      el('ul', { class: 'badges', 'aria-label': 'Status' },
        badge('order', 'Order', o.order_status), badge('payment', 'Payment', o.payment_status),
        badge('shipping', 'Shipping', o.shipping_status)),
      itemsTable(o),
      el('p', { class: 'total' }, el('span', { text: 'Total ' }), el('strong', { class: 'amount', text: o.order_total })),
      actions, timeline);
    return card;
  }

  function render(list) {
    const root = $('orders');
    root.replaceChildren();
    // Consecutive orders of one day share a heading: sorted by date that is "grouped by
    // date", and sorted by total the order the API gave is kept.
    let current = null;
    let group = null;
    for (const o of list.results) {
      const d = day(o.created_at);
      if (d !== current || group === null) {
        current = d;
        group = el('ul', { class: 'day-orders' });
        root.append(el('section', { class: 'day', 'data-day': d },
          el('h2', {}, el('time', { datetime: d, text: dayLabel(d) })), group));
      }
      group.append(el('li', {}, orderCard(o)));
    }
    const empty = list.results.length === 0;
    $('empty').hidden = !empty;
    if (empty) {
      const filtered = FORM_ARGS.some((a) => a !== 'sort_by' && a !== 'sort_dir' && params.get(a));
      $('empty-why').textContent = filtered ? 'No order matches these filters. Try clearing them.'
        : 'You have no orders yet.';
    }
    pager(list);
  }

  function pageHref(page) {
    const q = new URLSearchParams(params);
    q.set('page', String(page));
    return '?' + q.toString();
  }

  // "100+" when the API stopped counting (count_capped: a text search counts to 100, any
  // list to 1,000): the number of pages is then unknown, and `next` says whether one follows.
  function countText(list) {
    return list.count + (list.count_capped ? '+' : '');
  }

  function pager(list) {
    const size = list.page_size || 10;
    const pages = Math.max(1, Math.ceil((list.count || 0) / size));
    const page = list.page || 1;
    $('pager').hidden = (list.count || 0) === 0 && !list.next;
    $('page-info').textContent = 'Page ' + page + (list.count_capped ? '' : ' of ' + pages) + ' (' + countText(list) +
      (list.count === 1 && !list.count_capped ? ' order)' : ' orders)');
    for (const [id, target, show] of [['prev', page - 1, page > 1], ['next', page + 1, Boolean(list.next)]]) {
      const a = $(id);
      if (show) {
        a.href = pageHref(target);
        a.removeAttribute('aria-disabled');
        a.hidden = false;
      } else {
        a.removeAttribute('href');
        a.hidden = true;
      }
    }
  }

  // ---- actions ----

  async function load() {
    clearError();
    const root = $('orders');
    root.setAttribute('aria-busy', 'true');
    say('Loading orders…');
    const q = new URLSearchParams();
    for (const a of API_ARGS) if (params.get(a)) q.set(a, params.get(a));
    const qs = q.toString();
    const r = await api('GET', '/v1/orders/my-orders/' + customerId + '/' + (qs ? '?' + qs : ''));
    root.setAttribute('aria-busy', 'false');
    if (!r.ok || !r.data || !Array.isArray(r.data.results)) {
      say('');
      root.replaceChildren();
      $('pager').hidden = true;
      showError(r.ok ? { status: r.status, data: { error: 'unexpected answer' } } : r);
      return;
    }
    $('signin').hidden = true;
    render(r.data);
    say(r.data.count === 0 ? 'No orders found.' : 'Showing ' + r.data.results.length + ' of ' + countText(r.data) + ' orders.');
  }

  async function cancelOrder(o, card, button) {
    if (!window.confirm('Cancel order #' + o.order_id + '? This cannot be undone.')) return;
    button.disabled = true;
    clearError();
    say('Cancelling order #' + o.order_id + '…');
    const r = await api('POST', '/v1/orders/' + o.order_id + '/cancel/', {});
    if (r.ok && r.data && r.data.order) {
      const fresh = orderCard(r.data.order);
      fresh.classList.add('just-changed');
      card.replaceWith(fresh);
      say('Order #' + o.order_id + ' is now ' + r.data.order.order_status + '.');
      fresh.querySelector('h3').focus();
    } else {
      button.disabled = false;
      say('');
      showError(r);
    }
  }

  // One timeline entry (GET /v1/orders/{id}/events/): a status change "payment status: PENDING → PAID",
  // a saga step, or a downstream delivery "ship: delivered".
  function eventLine(ev) {
    let what;
    if (ev.type === 'status_change') {
      what = String(ev.field).replace(/_/g, ' ') + ': ' + (ev.from === null ? '' : ev.from + ' → ') + ev.to;
    } else if (ev.type === 'saga_step') {
      what = 'saga: ' + (ev.to || '');
    } else {
      what = (ev.kind || 'delivery') + ': ' + String(ev.type).replace(/_/g, ' ');
    }
    const li = el('li', {}, el('time', { datetime: ev.at, text: timeLabel(ev.at) }), ' ', el('span', { text: what }));
    if (ev.reason) li.append(el('span', { class: 'muted', text: ' (' + ev.reason + ')' }));
    return li;
  }

  async function toggleTimeline(o, button, box) {
    if (button.getAttribute('aria-expanded') === 'true') {
      button.setAttribute('aria-expanded', 'false');
      button.textContent = 'Show timeline';
      box.hidden = true;
      return;
    }
    button.setAttribute('aria-expanded', 'true');
    button.textContent = 'Hide timeline';
    box.hidden = false;
    box.replaceChildren(el('p', { class: 'muted', text: 'Loading the timeline…' }));
    const r = await api('GET', '/v1/orders/' + o.order_id + '/events/');
    if (r.status === 404 || r.status === 405) {
      // No timeline for this order (it is gone, or not this caller's): say so, nothing broke.
      box.replaceChildren(el('p', { class: 'muted', text: 'No timeline is available for this order.' }));
      return;
    }
    if (!r.ok) {
      box.replaceChildren(el('p', { class: 'error-text', text: errorText(r) }));
      return;
    }
    const events = (r.data && r.data.events) || [];
    if (events.length === 0) {
      box.replaceChildren(el('p', { class: 'muted', text: 'No events recorded yet.' }));
      return;
    }
    box.replaceChildren(el('h4', { text: 'Timeline' }), el('ol', { class: 'events' }, ...events.map(eventLine)));
  }

  // ---- start ----

  function fillForm() {
    for (const a of FORM_ARGS) {
      const v = params.get(a);
      if (v !== null && $(a)) $(a).value = v;
    }
    // The form does not show page_size; keep it across a search.
    if (params.get('page_size')) {
      $('filters').append(el('input', { type: 'hidden', name: 'page_size', value: params.get('page_size') }));
    }
    $('clear').href = location.pathname;
  }

  function start() {
    if (!customerId) {
      showError({ status: 404, data: { error: 'this address names no customer' } });
      return;
    }
    $('customer').textContent = 'Customer ' + customerId;
    takeFragmentToken();
    $('signout').hidden = !currentToken();
    fillForm();
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      setToken($('token').value.trim());
      $('token').value = '';
      load();
    });
    $('signout').addEventListener('click', () => {
      setToken(null);
      say('Token forgotten.');
    });
    load();
  }

  start();
}());
