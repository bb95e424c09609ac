-- outbox.lua - downstream work that must eventually happen (ship, notify, release, refund).
--
-- add() writes a row inside the caller's transaction, so the work is recorded exactly when
-- the order change that needs it commits. deliver_due() (the outbox job, on every replica)
-- claims due rows with FOR UPDATE SKIP LOCKED by leasing them (next_attempt_at moves past
-- the delivery time, so other replicas skip them without a transaction held open during
-- HTTP), calls the service, and marks the row delivered or reschedules it with exponential
-- backoff and jitter. Every call carries the row's Idempotency-Key, so the rare repeat (a
-- crash between the call and the mark, a lease outlived) is harmless downstream.

local cjson = require("cjson.safe")
local db = require("lib.db")
local downstream = require("orders.downstream")
local log = require("lib.log")

local _M = {}

local LEASE_SECONDS = 120
local BATCH = 10
-- Retry n waits about BASE * 2^n (jittered to 50-100 %), at most MAX.
local BACKOFF_BASE_MS = tonumber(os.getenv("OUTBOX_BACKOFF_BASE_MS") or "") or 1000
local BACKOFF_MAX_MS = tonumber(os.getenv("OUTBOX_BACKOFF_MAX_MS") or "") or 300000

local INSERT = db.statement("outbox_insert", [[
  INSERT INTO outbox (kind, order_id, payload, next_attempt_at)
  VALUES ($1, $2, $3::jsonb, now() + make_interval(secs => $4))
  RETURNING id, kind, order_id, payload::text AS payload, attempts]])

-- Lease due rows: oldest first; rows another replica holds are skipped, not waited for.
local CLAIM = db.statement("outbox_claim", [[
  UPDATE outbox o
     SET attempts = o.attempts + 1,
         next_attempt_at = now() + make_interval(secs => $2)
    FROM (SELECT id FROM outbox
           WHERE delivered_at IS NULL AND next_attempt_at <= now()
           ORDER BY next_attempt_at, id
           LIMIT $1
           FOR UPDATE SKIP LOCKED) due
   WHERE o.id = due.id
  RETURNING o.id, o.kind, o.order_id, o.payload::text AS payload, o.attempts]])

local MARK_DELIVERED = db.statement("outbox_delivered", [[
  UPDATE outbox SET delivered_at = now(), last_error = $2 WHERE id = $1 AND delivered_at IS NULL]])

local RESCHEDULE = db.statement("outbox_reschedule", [[
  UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
   WHERE id = $1 AND delivered_at IS NULL]])

-- A delivered refund is what makes the payment REFUNDED.
local MARK_REFUNDED = db.statement("outbox_refunded", [[
  WITH old AS (SELECT order_id, payment_status FROM ordersapp_order
                WHERE order_id = $1 AND payment_status = 'PAID' FOR UPDATE),
       upd AS (UPDATE ordersapp_order o SET payment_status = 'REFUNDED'
                 FROM old WHERE o.order_id = old.order_id RETURNING o.order_id)
  INSERT INTO order_events (order_id, field, from_status, to_status, actor, reason)
  SELECT order_id, 'payment_status', 'PAID', 'REFUNDED', 'saga', 'refund delivered' FROM upd]])

local EFFECTS = {
    refund = function(row) return db.query(MARK_REFUNDED, row.order_id) end,
}

-- Records work for after the commit; call inside db.transaction. lease_seconds > 0 keeps
-- the job away from the row while the caller delivers it itself right after committing.
function _M.add(kind, order_id, service, path, body, key, request_id, lease_seconds)
    local payload = assert(cjson.encode({ service = service, path = path, body = body, key = key,
                                          request_id = request_id }))
    local rows, err = db.query(INSERT, kind, order_id, payload, lease_seconds or 0)
    if not rows then
        return nil, err
    end
    return rows[1]
end

local function backoff_seconds(attempts)
    local ms = math.min(BACKOFF_BASE_MS * 2 ^ math.min(attempts - 1, 30), BACKOFF_MAX_MS)
    -- as text: db.query sends only integers as numbers
    return ("%.3f"):format(ms * (0.5 + math.random() / 2) / 1000)
end

-- Delivers one claimed row; returns true when it is done (delivered or refused for good).
function _M.deliver(row)
    local p = cjson.decode(row.payload)
    local outcome, res = downstream.call(p.service, p.path, p.body, { key = p.key, request_id = p.request_id })
    if outcome == "unavailable" then
        local delay = backoff_seconds(row.attempts)
        local _, err = db.query(RESCHEDULE, row.id, delay, res and res.message or "unavailable")
        if err then
            log.error("outbox reschedule failed", { id = row.id, error = err.message })
        end
        return false
    end
    local note = outcome == "refused" and ("refused with status " .. tostring(res.status)) or nil
    if note then
        log.warn("outbox delivery refused for good", { id = row.id, kind = row.kind, order_id = row.order_id,
                                                       status = res.status })
    end
    local ok, err = pcall(db.transaction, function()
        local marked = assert(db.query(MARK_DELIVERED, row.id, note))
        if marked.affected == 1 and outcome == "ok" and EFFECTS[row.kind] then
            assert(EFFECTS[row.kind](row))
        end
        return true
    end)
    if not ok then
        log.error("outbox mark failed", { id = row.id, error = tostring(err) })
        return false
    end
    return true
end

-- The outbox job: claims and delivers due rows until none are left or an error stops it.
function _M.deliver_due()
    while true do
        local rows, err = db.query(CLAIM, BATCH, LEASE_SECONDS)
        if not rows then
            log.warn("outbox claim failed", { error = err.message })
            return
        end
        for _, row in ipairs(rows) do
            _M.deliver(row)
        end
        if #rows < BATCH then
            return
        end
    end
end

return _M
