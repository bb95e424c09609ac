-- outbox.lua - downstream work that must eventually happen (ship, notify, release, refund,
-- shipping cancel).
--
-- add() writes a row inside the caller's transaction, so the work is recorded exactly when
-- the order change that needs it commits. deliver_due() (the outbox job, on every replica)
-- claims due rows with FOR UPDATE SKIP LOCKED by leasing them (next_attempt_at moves past
-- the delivery time, so other replicas skip them without a transaction held open during
-- HTTP), calls the service, and marks the row delivered or reschedules it with exponential
-- backoff and jitter. Every call carries the row's Idempotency-Key, so the rare repeat (a
-- crash between the call and the mark, a lease outlived) is harmless downstream.
--
-- Order of work: a row with after_id waits until that row is delivered (ORDER_CANCELLED
-- after an ORDER_CREATED in flight; a shipping cancel after the shipment's creation call).
-- Ship and ORDER_CREATED re-check the order under its lock before each call: for a
-- cancelled order they are voided, never sent; otherwise sent_at records that a call went
-- out, which tells a later cancel that the shipment must be cancelled.
--
-- Reconciliation: a refund or shipping cancel answered 404 ("unknown charge/shipment": the
-- charge or shipment may still arrive) is not final; it is retried with backoff for
-- RECONCILE_WINDOW_MS from the row's creation. A refund still unconfirmed then, or refused
-- otherwise, flags the order for a person (order_attention, GET /v1/orders/?needs_attention=true).

local async = require("lib.async")
local cjson = require("cjson.safe")
local db = require("lib.db")
local config = require("lib.config")
local downstream = require("orders.downstream")
local log = require("lib.log")
local metrics = require("lib.metrics")

local _M = {}

local BATCH = 10

local DELIVERIES = metrics.counter("orderservice_outbox_deliveries_total",
    "Outbox delivery attempts, by kind and outcome: delivered, voided (the order was cancelled "
    .. "first), retry (rescheduled with backoff), refused (done for good without the effect), "
    .. "failed (the database failed around the call; the lease brings the row back).",
    { "kind", "outcome" })

-- Retry n waits about BACKOFF_BASE_MS * 2^n (jittered to 50-100 %), at most BACKOFF_MAX_MS.
-- OUTBOX_LEASE_MS: how long a claimed row is another replica's to deliver: far above a
-- batch's calls; after a crash its rows wait this long.
local SETTINGS = {
    backoff_base_ms = config.OUTBOX_BACKOFF_BASE_MS,
    backoff_max_ms = config.OUTBOX_BACKOFF_MAX_MS,
    reconcile_window_ms = config.RECONCILE_WINDOW_MS,
    lease_ms = config.OUTBOX_LEASE_MS,
    concurrency = config.OUTBOX_CONCURRENCY or 1,
}
local LEASE_SECONDS = SETTINGS.lease_ms / 1000
_M.LEASE_SECONDS = LEASE_SECONDS

local INSERT = db.statement("outbox_insert", [[
  INSERT INTO outbox (kind, order_id, payload, next_attempt_at, after_id)
  VALUES ($1, $2, $3::jsonb, now() + make_interval(secs => $4), $5)
  RETURNING id, kind, order_id, payload::text AS payload, attempts, 0::float8 AS age_s]])

-- Lease due rows: oldest first; rows another replica holds are skipped, not waited for;
-- a row whose after_id row is still undelivered waits.
local CLAIM = db.statement("outbox_claim", [[
  UPDATE outbox o
     SET attempts = o.attempts + 1,
         next_attempt_at = now() + make_interval(secs => $2)
    FROM (SELECT id FROM outbox r
           WHERE delivered_at IS NULL AND next_attempt_at <= now()
             AND (after_id IS NULL OR NOT EXISTS (SELECT 1 FROM outbox p
                                                   WHERE p.id = r.after_id AND p.delivered_at IS NULL))
           ORDER BY next_attempt_at, id
           LIMIT $1
           FOR UPDATE SKIP LOCKED) due
   WHERE o.id = due.id
  RETURNING o.id, o.kind, o.order_id, o.payload::text AS payload, o.attempts,
            extract(epoch FROM now() - o.created_at)::float8 AS age_s]])

local MARK_DELIVERED = db.statement("outbox_delivered", [[
  UPDATE outbox SET delivered_at = now(), last_error = $2 WHERE id = $1 AND delivered_at IS NULL]])

local RESCHEDULE = db.statement("outbox_reschedule", [[
  UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
   WHERE id = $1 AND delivered_at IS NULL]])

local ORDER_STATUS = db.statement("outbox_order_status", [[
  SELECT order_status FROM ordersapp_order WHERE order_id = $1 FOR UPDATE]])

local MARK_SENT = db.statement("outbox_sent", [[
  UPDATE outbox SET sent_at = COALESCE(sent_at, now()) WHERE id = $1]])

-- A confirmed refund is what makes the payment REFUNDED: from PAID (a cancel after the
-- saga) or FAILED (a charge whose outcome was unknown: the refund proves it happened).
local MARK_REFUNDED = db.statement("outbox_refunded", [[
  WITH old AS (SELECT order_id, payment_status FROM ordersapp_order
                WHERE order_id = $1 AND payment_status IN ('PAID', 'FAILED') FOR UPDATE),
       upd AS (UPDATE ordersapp_order o SET payment_status = 'REFUNDED'
                 FROM old WHERE o.order_id = old.order_id RETURNING o.order_id)
  INSERT INTO order_events (order_id, field, from_status, to_status, actor, reason)
  SELECT old.order_id, 'payment_status', old.payment_status, 'REFUNDED', 'saga', 'refund confirmed'
    FROM old JOIN upd USING (order_id)]])

local FLAG = db.statement("outbox_flag", [[
  INSERT INTO order_attention (order_id, reason) VALUES ($1, $2)
  ON CONFLICT (order_id) DO UPDATE SET reason = EXCLUDED.reason, resolved_at = NULL]])

local EFFECTS = {
    refund = function(row) return db.query(MARK_REFUNDED, row.order_id) end,
}

-- 404 from these means "not seen yet" (the charge or shipment may still arrive).
local NOT_FINAL_404 = { refund = true, ship_cancel = true }

-- Records work for after the commit; call inside db.transaction. lease_seconds > 0 keeps
-- the job away from the row while the caller delivers it itself right after committing;
-- after_id makes the row wait for another row's delivery.
function _M.add(kind, order_id, service, path, body, key, request_id, lease_seconds, after_id)
    local payload = assert(cjson.encode({ service = service, path = path, body = body, key = key,
                                          request_id = request_id }))
    local rows, err = db.query(INSERT, kind, order_id, payload, lease_seconds or 0, after_id)
    if not rows then
        return nil, err
    end
    return rows[1]
end

local function backoff_seconds(attempts)
    local ms = math.min(SETTINGS.backoff_base_ms * 2 ^ math.min(attempts - 1, 30), SETTINGS.backoff_max_ms)
    -- as text: db.query sends only integers as numbers
    return ("%.3f"):format(ms * (0.5 + math.random() / 2) / 1000)
end

local function reschedule(row, note)
    local _, err = db.query(RESCHEDULE, row.id, backoff_seconds(row.attempts), note)
    if err then
        log.error("outbox reschedule failed", { id = row.id, error = err.message })
    end
    return false
end

-- Whether the row announces or ships the order (never for a cancelled order).
local function guarded(row, p)
    return row.kind == "ship" or (row.kind == "notify" and type(p.body) == "table" and p.body.type == "ORDER_CREATED")
end

-- Under the order's lock: "void" (cancelled: marked delivered, never sent) or "send"
-- (sent_at recorded, so a cancel from now on knows the call may have happened).
local function recheck(row)
    local ok, verdict = pcall(db.transaction, function()
        local o = assert(db.query(ORDER_STATUS, row.order_id))[1]
        if not o or o.order_status == "CANCELLED" then
            assert(db.query(MARK_DELIVERED, row.id, "voided: order cancelled"))
            return "void"
        end
        assert(db.query(MARK_SENT, row.id))
        return "send"
    end)
    return ok and verdict or nil
end

-- Marks the row delivered (with a note) and applies its effect; returns true when done.
local function done(row, note, effect, flag)
    local ok, err = pcall(db.transaction, function()
        local marked = assert(db.query(MARK_DELIVERED, row.id, note))
        if marked.affected == 1 and effect and EFFECTS[row.kind] then
            assert(EFFECTS[row.kind](row))
        end
        if marked.affected == 1 and flag then
            assert(db.query(FLAG, row.order_id, flag))
        end
        return true
    end)
    if not ok then
        log.error("outbox mark failed", { id = row.id, error = tostring(err) })
        return false
    end
    if flag then
        log.warn("order needs attention", { order_id = row.order_id, reason = flag })
    end
    return true
end

-- Delivers one claimed row; returns whether it is done, and the metrics' outcome.
local function deliver(row)
    local p = cjson.decode(row.payload)
    if guarded(row, p) then
        local verdict = recheck(row)
        if verdict ~= "send" then
            return verdict == "void", verdict == "void" and "voided" or "failed"
        end
    end
    local outcome, res = downstream.call(p.service, p.path, p.body, { key = p.key, request_id = p.request_id,
                                                                       operation = row.kind })
    if outcome == "unavailable" then
        return reschedule(row, res and res.message or "unavailable"), "retry"
    elseif outcome == "ok" then
        local ok = done(row, nil, true)
        return ok, ok and "delivered" or "failed"
    end
    local note = "refused with status " .. tostring(res.status)
    if NOT_FINAL_404[row.kind] and res.status == 404 then
        if (row.age_s or 0) * 1000 < SETTINGS.reconcile_window_ms then
            return reschedule(row, "not known yet: " .. note), "retry"
        end
        note = "unconfirmed after the reconciliation window: " .. note
    end
    log.warn("outbox delivery refused for good", { id = row.id, kind = row.kind, order_id = row.order_id,
                                                   status = res.status })
    local ok = done(row, note, false, row.kind == "refund" and ("refund " .. note) or nil)
    return ok, ok and "refused" or "failed"
end

-- Delivers one claimed row; returns true when it is done (delivered, voided, or refused for
-- good).
function _M.deliver(row)
    local finished, outcome = deliver(row)
    DELIVERIES:inc(row.kind, outcome)
    return finished
end

-- The outbox job: claims and delivers due rows until none are left (true) or the claim
-- fails (nil, err: the cycle did not complete; the next one tries again). Once the worker
-- stops (or a reload retires this VM) it claims no new batch; the rows it has claimed are
-- delivered first, since another replica would wait out their lease to take them.
--
-- A batch's rows are delivered in parallel, up to OUTBOX_CONCURRENCY at once (tasks from
-- async.spawn pulling rows off the batch): each delivery mostly waits on a downstream call,
-- so one at a time bounds the job at 1/latency rows per second, below what creates produce.
-- Parallel delivery keeps the order that matters: a row with after_id is claimed only once
-- the row it follows is delivered, so a row and its successor are never in the same batch.
local function deliver_batch(rows)
    local workers = math.min(SETTINGS.concurrency, #rows)
    if workers <= 1 then
        for _, row in ipairs(rows) do
            _M.deliver(row)
        end
        return
    end
    local next_row = 0
    local group = async.group()
    local function worker()
        while true do
            next_row = next_row + 1
            local row = rows[next_row]
            if not row then
                return
            end
            local ok, err = pcall(_M.deliver, row)
            if not ok then
                -- the row's lease brings it back; the other rows go on
                log.error("outbox delivery failed", { id = row.id, error = tostring(err) })
            end
        end
    end
    for _ = 1, workers do
        if not group:spawn(worker) then
            break
        end
    end
    if group.running == 0 then
        worker() -- nothing could be spawned: deliver them here, one at a time
    end
    group:wait()
end

function _M.deliver_due()
    local batch = math.max(BATCH, SETTINGS.concurrency)
    while not async.retired() do
        local rows, err = db.query(CLAIM, batch, ("%.3f"):format(LEASE_SECONDS))
        if not rows then
            return nil, "outbox claim failed: " .. tostring(err.message)
        end
        deliver_batch(rows)
        if #rows < batch then
            return true
        end
    end
    return true
end

return _M
