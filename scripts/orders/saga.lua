-- saga.lua - creating and cancelling an order across inventory, payment and shipping.
--
-- Create (the order is already committed PENDING with its order_sagas row 'reserving'):
--   reserve ─ok→ (step 'charging') charge ─ok→ CONFIRMED/PAID, outbox: ship, notify → 201
--      │refused → CANCELLED                                     → 409
--      │unavailable → CANCELLED, outbox: release                → 503
--                          charge refused → CANCELLED/FAILED, outbox: release          → 402
--                          charge unavailable → CANCELLED/FAILED, outbox: release, refund
--                                               (the charge may have happened)        → 503
-- Each ending is one transaction: statuses, their order_events, the outbox rows and the
-- saga row change together or not at all. Ship and notify go through the outbox only, so
-- a shipping or notification outage never fails or slows a create. An order whose process
-- died mid-saga is finished by recover() (the saga_recovery job) after SAGA_GRACE_MS.
--
-- Cancel: CANCELLED plus outbox rows for release, refund (when PAID) and the notification,
-- delivered right away by the request and, for any that fail, by the outbox job later.

local cjson = require("cjson.safe")
local db = require("lib.db")
local downstream = require("orders.downstream")
local log = require("lib.log")
local outbox = require("orders.outbox")

local _M = {}

local GRACE_SECONDS = (tonumber(os.getenv("SAGA_GRACE_MS") or "") or 30000) / 1000
local INLINE_LEASE_SECONDS = 60

local SET_STEP = db.statement("saga_step", [[
  UPDATE order_sagas SET step = $2, updated_at = now() WHERE order_id = $1 AND finished_at IS NULL]])

local LOCK_SAGA = db.statement("saga_lock", [[
  SELECT s.step, s.finished_at IS NOT NULL AS finished, o.order_status, o.payment_status
    FROM order_sagas s JOIN ordersapp_order o USING (order_id)
   WHERE s.order_id = $1 FOR UPDATE OF s, o]])

local FINISH_SAGA = db.statement("saga_finish", [[
  UPDATE order_sagas SET step = 'done', finished_at = now(), updated_at = now(), outcome = $2
   WHERE order_id = $1]])

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

local function notify(type, step, order, rid, lease)
    return outbox.add("notify", order.order_id, "notification", "",
                      { type = type, data = { order_id = order.order_id, order_total = order.order_total,
                                              customer_id = order.customer_id } },
                      key(order.order_id, "notify-" .. step), rid, lease)
end

-- The outbox rows each kind of work needs; `lease` keeps the job off rows the caller
-- delivers itself.
local WORK = {
    release = function(order, rid, lease)
        return outbox.add("release", order.order_id, "inventory", "/release/", inventory_body(order),
                          key(order.order_id, "release"), rid, lease)
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
    notify_created = function(order, rid, lease) return notify("ORDER_CREATED", "created", order, rid, lease) end,
    notify_cancelled = function(order, rid, lease) return notify("ORDER_CANCELLED", "cancelled", order, rid, lease) end,
}

-- One transaction ends the saga: statuses (+events), outbox rows, saga row. If the saga was
-- already finished (the recovery job got there first), nothing changes and the order's
-- current state decides the answer.
local function finish(order, statuses, work, outcome, rid, actor)
    local ok, result, err = pcall(db.transaction, function()
        local saga = assert(db.query(LOCK_SAGA, order.order_id))[1]
        if not saga or saga.finished then
            return "already finished"
        end
        if saga.order_status ~= "PENDING" then
            -- Cancelled through the API while the saga ran: undo what the saga did.
            statuses = {}
            work = { "release", "refund" }
            outcome = "cancelled meanwhile"
        end
        assert(db.query(SET_STATUSES, order.order_id, statuses.order, statuses.payment, statuses.shipping,
                        actor or "saga", outcome))
        for _, name in ipairs(work) do
            assert(WORK[name](order, rid, 0))
        end
        assert(db.query(FINISH_SAGA, order.order_id, outcome))
        return outcome
    end)
    if not ok then
        return nil, result
    end
    return result, err
end

local CANCELLED = { order = "CANCELLED", shipping = "Cancelled" }
local CANCELLED_FAILED = { order = "CANCELLED", payment = "FAILED", shipping = "Cancelled" }

-- Runs the create saga for a committed PENDING order (order_id, customer_id, order_total
-- as a string, items). Returns the HTTP status to answer and, for failures, a message.
function _M.create(order, rid)
    local outcome, res = downstream.call("inventory", "/reserve/", inventory_body(order),
                                         { key = key(order.order_id, "reserve"), request_id = rid,
                                           refusals = { [409] = true, [422] = true } })
    if outcome ~= "ok" then
        local refused = outcome == "refused"
        local ok, err = finish(order, CANCELLED, refused and {} or { "release" },
                               refused and "reservation refused" or "inventory unavailable", rid)
        if not ok then
            return 503, "could not record the saga's outcome: " .. tostring(err)
        end
        return refused and 409 or 503,
            refused and "inventory refused the reservation" or ("inventory unavailable: " .. tostring(res.message))
    end

    local stepped, err = db.query(SET_STEP, order.order_id, "charging")
    if not stepped then
        -- Unrecorded, the step would let recovery skip the refund a charge may need.
        finish(order, CANCELLED, { "release" }, "saga state unavailable", rid)
        return 503, "database unavailable: " .. err.message
    end
    outcome, res = downstream.call("payment", "/charge/",
                                   { order_id = order.order_id, customer_id = order.customer_id,
                                     amount = order.order_total, method = "Card" },
                                   { key = key(order.order_id, "charge"), request_id = rid })
    if outcome ~= "ok" then
        local refused = outcome == "refused"
        local ok, ferr = finish(order, CANCELLED_FAILED, refused and { "release" } or { "release", "refund" },
                                refused and "payment refused" or "payment unavailable", rid)
        if not ok then
            return 503, "could not record the saga's outcome: " .. tostring(ferr)
        end
        return refused and 402 or 503,
            refused and "payment refused" or ("payment unavailable: " .. tostring(res.message))
    end

    local ok, ferr = finish(order, { order = "CONFIRMED", payment = "PAID" }, { "ship", "notify_created" },
                            "confirmed", rid)
    if not ok then
        return 503, "could not record the saga's outcome: " .. tostring(ferr)
    end
    if ok ~= "confirmed" then
        return 409, "order was cancelled while it was being created"
    end
    return 201
end

-- Compensation for cancel, inside the caller's transaction (after it set CANCELLED):
-- returns the outbox rows to deliver right after the commit.
function _M.cancel_work(order, was_paid, rid)
    local rows = {}
    for _, name in ipairs(was_paid and { "release", "refund", "notify_cancelled" } or { "release", "notify_cancelled" }) do
        rows[#rows + 1] = assert(WORK[name](order, rid, INLINE_LEASE_SECONDS))
    end
    return rows
end

-- Delivers rows a request leased for itself; failures stay for the outbox job.
function _M.deliver_now(rows)
    for _, row in ipairs(rows) do
        outbox.deliver(row)
    end
end

-- The saga_recovery job: orders whose saga stalled past the grace period are cancelled and
-- compensated (release always; refund when the charge may have happened).
function _M.recover()
    local stalled, err = db.query(UNFINISHED, GRACE_SECONDS)
    if not stalled then
        log.warn("saga recovery could not look for stalled sagas", { error = err.message })
        return
    end
    for _, s in ipairs(stalled) do
        local row = assert(db.query(ORDER_FOR_COMPENSATION, s.order_id))[1]
        if row then
            row.items = cjson.decode(row.items)
            local ok, ferr = pcall(db.transaction, function()
                local saga = assert(db.query(LOCK_SAGA, s.order_id))[1]
                if not saga or saga.finished then
                    return "already finished"
                end
                local charged = saga.step == "charging"
                assert(db.query(SET_STATUSES, s.order_id, saga.order_status == "PENDING" and "CANCELLED" or nil,
                                saga.payment_status == "PENDING" and "FAILED" or nil,
                                saga.order_status == "PENDING" and "Cancelled" or nil, "saga-recovery",
                                "saga stalled at " .. saga.step))
                assert(WORK.release(row, "recovery", 0))
                if charged then
                    assert(WORK.refund(row, "recovery", 0))
                end
                assert(db.query(FINISH_SAGA, s.order_id, "recovered at " .. saga.step))
                return true
            end)
            log.warn("stalled saga compensated", { order_id = s.order_id, ok = ok and true or false,
                                                   error = ferr and tostring(ferr) })
        end
    end
end

return _M
