-- saga.lua - creating and cancelling an order across inventory, payment and shipping.
--
-- One authority over an order's fate: the order row, locked, and its order_sagas row. Every
-- step the saga takes and every ending is a transaction that first locks the order, so a
-- cancel (POST .../cancel/ or PATCH to CANCELLED, one code path: on_cancel) and the saga
-- are serialised. The saga records what it did at each step (reserve / charge: 'sent',
-- 'done', 'refused') before and after each call, and runs the next step only while the
-- order is still PENDING:
--
--   lock: PENDING? reserve='sent' ── reserve ──→ lock: PENDING? reserve='done', charge='sent'
--     ── charge ──→ lock: PENDING? CONFIRMED/PAID, outbox: ship, ORDER_CREATED      → 201
--   reserve refused        → CANCELLED/FAILED                                      → 409
--   reserve unavailable    → CANCELLED/FAILED, outbox: release                     → 503
--   charge refused         → CANCELLED/FAILED, outbox: release                     → 402
--   charge unavailable     → CANCELLED/FAILED, outbox: release, refund (reconciled
--                            until the payment service confirms it; then REFUNDED)  → 503
--   no longer PENDING at any lock (cancelled meanwhile) → compensate exactly what is
--                            'sent' or 'done'; payment PAID when the charge is done (the
--                            refund makes it REFUNDED), else FAILED                → 409
--
-- A cancel while the saga runs only records the intent (CANCELLED) and announces it; the
-- saga compensates at its next lock. A cancel after the saga compensates from the saga's
-- record, voids ship and ORDER_CREATED rows that never went out, and follows those that
-- did with a shipping cancel / the ORDER_CANCELLED notification (outbox.after_id).
-- A process that dies mid-saga leaves the row unfinished: recover() (the saga_recovery job)
-- compensates it after SAGA_GRACE_MS from the same record.

local async = require("lib.async")
local cjson = require("cjson.safe")
local config = require("lib.config")
local db = require("lib.db")
local downstream = require("orders.downstream")
local log = require("lib.log")
local metrics = require("lib.metrics")
local outbox = require("orders.outbox")

local _M = {}

-- Counted after the commit that records them (docs/operators.md lists the series).
local CREATED = metrics.counter("orderservice_orders_created_total",
    "Creates whose saga ended, by outcome: confirmed, out_of_stock, payment_declined, unavailable "
    .. "(a service or the database failed; compensated), cancelled (cancelled while being created).",
    { "outcome" })
local TRANSITIONS = metrics.counter("orderservice_order_transitions_total",
    "Order status changes, by from and to status.", { "from", "to" })
local RECOVERIES = metrics.counter("orderservice_saga_recoveries_total",
    "Stalled sagas the saga_recovery job ended and compensated.")
local CANCELLED = metrics.counter("orderservice_orders_cancelled_total",
    "Orders cancelled by a request (POST .../cancel/ or PATCH to CANCELLED).")

-- Counts committed status changes made outside the saga (the orders API): events are
-- { field, from, to } as the handler planned them.
function _M.count_changes(events)
    for _, e in ipairs(events) do
        if e.field == "order_status" then
            TRANSITIONS:inc(e.from, e.to)
            if e.to == "CANCELLED" then
                CANCELLED:inc()
            end
        end
    end
end
-- finish()'s outcome (also stored in order_sagas.outcome) -> the metric's outcome.
local CREATED_OUTCOME = {
    confirmed = "confirmed", ["reservation refused"] = "out_of_stock", ["payment refused"] = "payment_declined",
    ["cancelled meanwhile"] = "cancelled",
}

-- as text: db.query sends only integers as numbers, and 1500 ms is 1.5 s
local GRACE_SECONDS = ("%.3f"):format(config.SAGA_GRACE_MS / 1000)
-- rows a request delivers itself right after its commit: the job's lease keeps them apart
local INLINE_LEASE_SECONDS = ("%.3f"):format(outbox.LEASE_SECONDS)

-- Test-only: tests/integration/fixtures/routes.lua replaces this to kill the process at a
-- named point of create (after_insert, after_reserve, after_charge, before_commit, after_saga).
function _M.crash_point(_) end

-- The order row locked, with its saga record (all saga columns NULL for legacy orders).
-- Every writer of order_sagas holds this lock first, so the saga row needs none of its own.
local STATE_SQL = [[
  SELECT o.order_status, o.payment_status, o.shipping_status,
         s.step, s.reserve, s.charge, s.releases, s.finished_at IS NOT NULL AS finished
    FROM ordersapp_order o LEFT JOIN order_sagas s USING (order_id)
   WHERE o.order_id = $1]]
local LOCK = db.statement("saga_lock", STATE_SQL .. " FOR UPDATE OF o")
local STATE = db.statement("saga_state", STATE_SQL)

local SET_FACTS = db.statement("saga_facts", [[
  UPDATE order_sagas SET step = COALESCE($2, step), reserve = COALESCE($3, reserve),
                         charge = COALESCE($4, charge), updated_at = now()
   WHERE order_id = $1]])

local NEXT_RELEASE = db.statement("saga_next_release", [[
  UPDATE order_sagas SET releases = releases + 1 WHERE order_id = $1 RETURNING releases]])

local FINISH_SAGA = db.statement("saga_finish", [[
  UPDATE order_sagas SET step = 'done', finished_at = now(), updated_at = now(), outcome = $2
   WHERE order_id = $1]])

local EVENT = db.statement("saga_event", [[
  INSERT INTO order_events (order_id, field, from_status, to_status, actor, reason)
  VALUES ($1, 'saga', NULL, $2, $3, $4)]])

-- Sets whichever statuses are given (NULL keeps one) and records an event per change.
local SET_STATUSES = db.statement("saga_set_statuses", [[
  WITH old AS (SELECT order_id, order_status, payment_status, shipping_status
                 FROM ordersapp_order WHERE order_id = $1 FOR UPDATE),
       upd AS (UPDATE ordersapp_order o
                  SET order_status = COALESCE($2, o.order_status),
                      payment_status = COALESCE($3, o.payment_status),
                      shipping_status = COALESCE($4, o.shipping_status)
                 FROM old WHERE o.order_id = old.order_id
               RETURNING o.order_id, o.order_status, o.payment_status, o.shipping_status),
       ev AS (INSERT INTO order_events (order_id, field, from_status, to_status, actor, reason)
              SELECT old.order_id, f.field, f.from_status, f.to_status, $5, $6
                FROM old JOIN upd USING (order_id),
                     LATERAL (VALUES ('order_status', old.order_status, upd.order_status),
                                     ('payment_status', old.payment_status, upd.payment_status),
                                     ('shipping_status', old.shipping_status, upd.shipping_status))
                             AS f(field, from_status, to_status)
               WHERE f.from_status IS DISTINCT FROM f.to_status)
  SELECT order_id, order_status, payment_status FROM upd]])

-- A cancel voids the ship and ORDER_CREATED rows no call was made for ...
local VOID_UNSENT = db.statement("saga_void_unsent", [[
  UPDATE outbox SET delivered_at = now(), last_error = 'voided: order cancelled'
   WHERE order_id = $1 AND delivered_at IS NULL AND sent_at IS NULL
     AND (kind = 'ship' OR (kind = 'notify' AND payload->'body'->>'type' = 'ORDER_CREATED'))]])

-- ... and follows those that went out (the newest of each kind; in_flight when undelivered).
local SENT = db.statement("saga_sent", [[
  SELECT DISTINCT ON (kind) id, kind, delivered_at IS NULL AS in_flight
    FROM outbox
   WHERE order_id = $1 AND sent_at IS NOT NULL
     AND (last_error IS DISTINCT FROM 'voided: order cancelled' OR delivered_at IS NULL)
     AND (kind = 'ship' OR (kind = 'notify' AND payload->'body'->>'type' = 'ORDER_CREATED'))
   ORDER BY kind, id DESC]])

local UNFINISHED = db.statement("saga_unfinished", [[
  SELECT order_id FROM order_sagas
   WHERE finished_at IS NULL AND updated_at < now() - make_interval(secs => $1)
   ORDER BY updated_at LIMIT 20]])

local ORDER_FOR_COMPENSATION = db.statement("saga_order", [[
  SELECT o.order_id, o.customer_id, o.order_total,
         COALESCE(json_agg(json_build_object('product_id', i.product_id, 'sku', i.sku, 'quantity', i.quantity)
                           ORDER BY i.order_item_id) FILTER (WHERE i.order_item_id IS NOT NULL), '[]')::text AS items
    FROM ordersapp_order o LEFT JOIN ordersapp_orderitem i USING (order_id)
   WHERE o.order_id = $1 GROUP BY o.order_id]])

local function key(order_id, step)
    return ("order-%d-%s"):format(order_id, step)
end

local function inventory_body(order)
    local items = {}
    for i, item in ipairs(order.items) do
        items[i] = { product_id = item.product_id, sku = item.sku, quantity = item.quantity, warehouse = "WH1" }
    end
    return { order_id = order.order_id, items = items }
end

local function notify(type, step, order, rid, lease, after_id)
    return outbox.add("notify", order.order_id, "notification", "",
                      { type = type, data = { order_id = order.order_id, order_total = order.order_total,
                                              customer_id = order.customer_id } },
                      key(order.order_id, "notify-" .. step), rid, lease, after_id)
end

-- The outbox rows each kind of work needs; `lease` keeps the job off rows the caller
-- delivers itself. Call inside a transaction holding the order's lock.
local WORK = {
    -- The first release is order-N-release; one that must follow a late reservation (the
    -- saga learnt of it after a release had gone out) gets its own key, order-N-release-2,
    -- so an idempotent inventory does not replay the first release's answer.
    release = function(order, rid, lease)
        local rows = assert(db.query(NEXT_RELEASE, order.order_id))
        local n = rows[1] and rows[1].releases or 1
        return outbox.add("release", order.order_id, "inventory", "/release/", inventory_body(order),
                          key(order.order_id, n == 1 and "release" or ("release-" .. n)), rid, lease)
    end,
    refund = function(order, rid, lease)
        return outbox.add("refund", order.order_id, "payment", ("/%d/refund/"):format(order.order_id),
                          { order_id = order.order_id, amount = order.order_total },
                          key(order.order_id, "refund"), rid, lease)
    end,
    ship = function(order, rid, lease)
        return outbox.add("ship", order.order_id, "shipping", "/create/",
                          { order_id = order.order_id, customer_id = order.customer_id, carrier = "Standard",
                            tracking_no = ("TRK%010d"):format(order.order_id), status = "PENDING" },
                          key(order.order_id, "ship"), rid, lease)
    end,
    ship_cancel = function(order, rid, lease, after_id)
        return outbox.add("ship_cancel", order.order_id, "shipping", ("/%d/cancel/"):format(order.order_id),
                          { order_id = order.order_id }, key(order.order_id, "ship-cancel"), rid, lease, after_id)
    end,
    notify_created = function(order, rid, lease) return notify("ORDER_CREATED", "created", order, rid, lease) end,
    notify_cancelled = function(order, rid, lease, after_id)
        return notify("ORDER_CANCELLED", "cancelled", order, rid, lease, after_id)
    end,
}

-- Locks the order and returns its state and its saga's as they are once the lock is held.
-- FOR UPDATE OF o waits for a transaction that holds the order (another replica recovering
-- the same saga), but then re-reads only the order's row: the saga row joined to it stays the
-- one read before the wait (PostgreSQL's EvalPlanQual), so that saga would look unfinished
-- and be compensated twice. A second statement, taken under the lock, sees what it committed.
local function lock(order_id)
    if not assert(db.query(LOCK, order_id))[1] then
        return nil
    end
    return assert(db.query(STATE, order_id))[1]
end

local function saga_event(order_id, what, actor, reason)
    assert(db.query(EVENT, order_id, what, actor or "saga", reason))
end

-- What undoes the saga's record: a release when the reservation may exist, a refund when
-- the charge may have happened. Returns the outbox rows.
local function compensate(order, st, rid, lease)
    local rows = {}
    if st.reserve == "sent" or st.reserve == "done" then
        rows[#rows + 1] = assert(WORK.release(order, rid, lease))
    end
    if st.charge == "sent" or st.charge == "done" then
        rows[#rows + 1] = assert(WORK.refund(order, rid, lease))
    end
    return rows
end

-- Records the step's facts and starts the next step if the order is still PENDING.
-- Returns true (go on) or false (stop: cancelled or already ended), or raises.
local function advance(order_id, facts, what)
    return db.transaction(function()
        local st = lock(order_id)
        if not st or st.finished or st.step == db.null or st.order_status ~= "PENDING" then
            return false
        end
        assert(db.query(SET_FACTS, order_id, facts.step, facts.reserve, facts.charge))
        saga_event(order_id, what)
        return true
    end)
end

local CANCELLED_MEANWHILE = "order was cancelled while it was being created"

-- One transaction ends the saga: its facts, statuses (+events), outbox rows, the saga row
-- and (on_finish, e.g. the Idempotency-Key's answer). `want` = { statuses, work, status,
-- message, outcome } applies when the order is still PENDING; otherwise what was done is
-- compensated. Returns { status, message, resp } or nil, err.
local function finish(order, facts, want, on_finish)
    local ok, result, err = pcall(db.transaction, function()
        local id = order.order_id
        local st = assert(lock(id), "the order vanished")
        assert(db.query(SET_FACTS, id, nil, facts.reserve, facts.charge))
        st.reserve, st.charge = facts.reserve or st.reserve, facts.charge or st.charge
        local status, message, outcome = want.status, want.message, want.outcome
        if st.finished then
            -- Recovery ended it first and compensated what was 'sent'. A reservation that
            -- completed since needs a release of its own.
            if facts.reserve == "done" and (st.releases or 0) > 0 then
                assert(WORK.release(order, "saga", 0))
            end
            status, message = 409, CANCELLED_MEANWHILE
            saga_event(id, "late answer", "saga", "after the saga had ended")
        else
            if st.order_status ~= "PENDING" then
                compensate(order, st, "saga", 0)
                assert(db.query(SET_STATUSES, id, nil, st.charge == "done" and "PAID" or "FAILED", nil,
                                "saga", "cancelled while being created"))
                status, message, outcome = 409, CANCELLED_MEANWHILE, "cancelled meanwhile"
            else
                local s = want.statuses
                assert(db.query(SET_STATUSES, id, s.order, s.payment, s.shipping, "saga", outcome))
                for _, name in ipairs(want.work) do
                    assert(WORK[name](order, "saga", 0))
                end
            end
            saga_event(id, "ended", "saga", outcome)
            assert(db.query(FINISH_SAGA, id, outcome))
        end
        local resp = on_finish and on_finish(status, message)
        _M.crash_point("before_commit")
        return { status = status, message = message, resp = resp, outcome = outcome, ended = not st.finished,
                 from = st.order_status, to = st.order_status == "PENDING" and want.statuses and want.statuses.order }
    end)
    if not ok then
        return nil, result
    elseif not result then
        return nil, err
    end
    if result.ended then
        CREATED:inc(CREATED_OUTCOME[result.outcome] or "unavailable")
        if result.to and result.to ~= result.from then
            TRANSITIONS:inc(result.from, result.to)
        end
    end
    return result
end

local CANCELLED_FAILED = { order = "CANCELLED", payment = "FAILED", shipping = "Cancelled" }

-- Runs the create saga for a committed PENDING order (order_id, customer_id, order_total
-- as a string, items). on_finish(status, message) runs inside the transaction that records
-- the outcome and returns the response to store with it. Returns { status, message, resp }
-- or nil, err when the outcome could not be recorded (the saga then stays unfinished and
-- recovery compensates it).
function _M.create(order, rid, on_finish)
    local id = order.order_id
    local ok, go = pcall(advance, id, { step = "reserving", reserve = "sent" }, "reserve sent")
    if not ok then
        return nil, go
    elseif not go then
        return finish(order, {}, {}, on_finish) -- cancelled before the reservation
    end
    local outcome, res = downstream.call("inventory", "/reserve/", inventory_body(order),
                                         { key = key(id, "reserve"), request_id = rid, operation = "reserve",
                                           refusals = { [409] = true, [422] = true } })
    _M.crash_point("after_reserve")
    if outcome ~= "ok" then
        local refused = outcome == "refused"
        return finish(order, { reserve = refused and "refused" or nil }, {
            statuses = CANCELLED_FAILED, work = refused and {} or { "release" },
            status = refused and 409 or 503,
            message = refused and "inventory refused the reservation"
                or ("inventory unavailable: " .. tostring(res.message)),
            outcome = refused and "reservation refused" or "inventory unavailable",
        }, on_finish)
    end

    ok, go = pcall(advance, id, { reserve = "done", step = "charging", charge = "sent" }, "charge sent")
    if not ok or not go then
        -- Cancelled meanwhile (or the database failed): end now, undoing the reservation.
        return finish(order, { reserve = "done" }, { statuses = CANCELLED_FAILED, work = { "release" },
                                                     status = 503, message = "saga state unavailable",
                                                     outcome = "saga state unavailable" }, on_finish)
    end
    outcome, res = downstream.call("payment", "/charge/",
                                   { order_id = id, customer_id = order.customer_id,
                                     amount = order.order_total, method = "Card" },
                                   { key = key(id, "charge"), request_id = rid, operation = "charge" })
    _M.crash_point("after_charge")
    if outcome ~= "ok" then
        local refused = outcome == "refused"
        return finish(order, { reserve = "done", charge = refused and "refused" or nil }, {
            statuses = CANCELLED_FAILED, work = refused and { "release" } or { "release", "refund" },
            status = refused and 402 or 503,
            message = refused and "payment refused" or ("payment unavailable: " .. tostring(res.message)),
            outcome = refused and "payment refused" or "payment unavailable",
        }, on_finish)
    end
    return finish(order, { reserve = "done", charge = "done" }, {
        statuses = { order = "CONFIRMED", payment = "PAID" }, work = { "ship", "notify_created" },
        status = 201, outcome = "confirmed",
    }, on_finish)
end

local SAGA_STATE = db.statement("saga_state", [[
  SELECT reserve, charge, finished_at IS NOT NULL AS finished FROM order_sagas WHERE order_id = $1]])

-- The cancel's compensation, inside the caller's transaction (the order is locked and now
-- CANCELLED; `before` is the row as it was). Returns the outbox rows to deliver right after
-- the commit (rows that must wait for another row are left to the outbox job).
function _M.on_cancel(order, before, rid)
    local id = order.order_id
    local st = assert(db.query(SAGA_STATE, id))[1]
    local rows = {}
    if st and not st.finished then
        -- The saga (or, if its process died, recovery) compensates what it did.
        rows[1] = assert(WORK.notify_cancelled(order, rid, INLINE_LEASE_SECONDS))
        return rows
    end
    assert(db.query(VOID_UNSENT, id))
    local follow = {}
    for _, r in ipairs(assert(db.query(SENT, id))) do
        follow[r.kind] = r
    end
    local legacy = st == nil
    if legacy or st.reserve == "done" or st.reserve == "sent" then
        rows[#rows + 1] = assert(WORK.release(order, rid, INLINE_LEASE_SECONDS))
    end
    if before.payment_status == "PAID" then
        rows[#rows + 1] = assert(WORK.refund(order, rid, INLINE_LEASE_SECONDS))
    end
    local function after(kind)
        local r = follow[kind]
        return r and r.in_flight and r.id or nil
    end
    if follow.ship then
        local after_id = after("ship")
        local row = assert(WORK.ship_cancel(order, rid, after_id and 0 or INLINE_LEASE_SECONDS, after_id))
        if not after_id then
            rows[#rows + 1] = row
        end
    end
    local after_id = after("notify")
    local row = assert(WORK.notify_cancelled(order, rid, after_id and 0 or INLINE_LEASE_SECONDS, after_id))
    if not after_id then
        rows[#rows + 1] = row
    end
    return rows
end

-- Whether the order's saga still runs (a status change other than cancel must wait for it).
function _M.running(order_id)
    local rows, err = db.query(SAGA_STATE, order_id)
    if not rows then
        return nil, err
    end
    return rows[1] ~= nil and not rows[1].finished
end

-- Delivers rows a request leased for itself; failures stay for the outbox job.
function _M.deliver_now(rows)
    for _, row in ipairs(rows) do
        outbox.deliver(row)
    end
end

-- The saga_recovery job: orders whose saga stalled past the grace period are cancelled and
-- compensated from the saga's record (release when the reservation may exist, refund when
-- the charge may have happened). Each saga is recovered in one transaction; once the worker
-- stops, no further one is begun (the next sweep, on any replica, takes them).
function _M.recover()
    local stalled, err = db.query(UNFINISHED, GRACE_SECONDS)
    if not stalled then
        return nil, "saga recovery could not look for stalled sagas: " .. tostring(err.message)
    end
    for _, s in ipairs(stalled) do
        if async.retired() then
            break
        end
        local row = assert(db.query(ORDER_FOR_COMPENSATION, s.order_id))[1]
        if row then
            row.items = cjson.decode(row.items)
            local ok, ferr = pcall(db.transaction, function()
                local st = lock(s.order_id)
                if not st or st.finished or st.step == db.null then
                    return "already finished"
                end
                if st.reserve == "none" and st.step == "charging" then
                    st.reserve, st.charge = "sent", "sent" -- a saga begun before migration 0006
                end
                compensate(row, st, "recovery", 0)
                local pending = st.order_status == "PENDING"
                assert(db.query(SET_STATUSES, s.order_id, pending and "CANCELLED" or nil,
                                st.payment_status == "PENDING" and "FAILED" or nil,
                                pending and "Cancelled" or nil, "saga-recovery", "saga stalled at " .. st.step))
                saga_event(s.order_id, "ended", "saga-recovery", "recovered at " .. st.step)
                assert(db.query(FINISH_SAGA, s.order_id, "recovered at " .. st.step))
                return pending and "cancelled" or true
            end)
            if ok and (ferr == true or ferr == "cancelled") then
                RECOVERIES:inc()
                if ferr == "cancelled" then
                    TRANSITIONS:inc("PENDING", "CANCELLED")
                end
            end
            log.warn("stalled saga compensated", { order_id = s.order_id, ok = ok and true or false,
                                                   error = ferr and tostring(ferr) })
        end
    end
    return true
end

return _M
