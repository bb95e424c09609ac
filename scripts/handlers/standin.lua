-- standin: in-memory stand-ins for inventory, payment, shipping and notification.
--
-- Each step records the call (step, Idempotency-Key, X-Request-Id, body, path) in a bounded
-- log (the newest STANDIN_CALL_LOG calls, default 5000) and keeps a ledger per order, as the
-- real services would: reservations and releases, cents charged and refunded, shipments
-- created and cancelled, notifications. The work is done when the call arrives and the
-- answer comes STANDIN_LATENCY_MS later (so a caller that times out still got the work
-- done, as in life); STANDIN_FAILURE_RATE answers 503 without doing anything.
--
-- A repeated Idempotency-Key gets the first answer again without doing the work twice,
-- except 5xx and 404: a refund of a charge not (yet) seen, or a cancel of a shipment not
-- (yet) created, answers 404 and is not remembered, so the caller's retry can succeed once
-- the charge or shipment arrives. A release with nothing reserved answers 200
-- {"released": false}.
--
-- PUT /_behaviour { "<step>": { ... } } ({} resets all), per step:
--   status       answer this status instead (a non-2xx does nothing)
--   delay_ms     answer this late
--   fail_rate    answer 503 (nothing done) with this probability
--   apply_after_ms  do the work only this late (charge: a late charge that lands after the
--                caller gave up and after its refund)
--   unknown      refund / ship_cancel: always 404 (the charge or shipment never arrives)
-- GET /_calls, DELETE /_calls (forgets the calls; answers and ledgers stay), GET /_ledger.
-- Answers and ledgers are bounded too (the newest 20 x STANDIN_CALL_LOG keys / orders).

local async = require("lib.async")
local config = require("lib.config")
local response = require("lib.response")

local _M = {}

-- The call log keeps STANDIN_CALL_LOG calls; answers and ledgers are remembered for 20 times
-- as many (idempotent replays and the tests' ledger checks need more history than the log).
local SETTINGS = {
    latency_ms = config.STANDIN_LATENCY_MS,
    fail_rate = config.STANDIN_FAILURE_RATE,
    call_log = config.STANDIN_CALL_LOG,
    remembered = config.STANDIN_CALL_LOG * 20,
}

-- A bounded map: past `cap` entries the oldest key is forgotten.
local function bounded(cap)
    return { cap = cap, map = {}, order = {}, first = 1, next = 1 }
end

local function put(b, k, v)
    if b.map[k] == nil then
        b.order[b.next], b.next = k, b.next + 1
        if b.next - b.first > b.cap then
            b.map[b.order[b.first]], b.order[b.first] = nil, nil
            b.first = b.first + 1
        end
    end
    b.map[k] = v
end

local calls = bounded(SETTINGS.call_log)
local answers = bounded(SETTINGS.remembered)
local ledgers = bounded(SETTINGS.remembered)
local behaviour = {}

local IN_FLIGHT = {}

local function ledger(order_id)
    local id = tostring(order_id)
    local l = ledgers.map[id]
    if not l then
        l = { reserved = 0, reservations = 0, releases = 0, charged_cents = 0, refunded_cents = 0,
              active_shipments = 0, shipments = 0, shipment_cancels = 0, notifications = response.array() }
        put(ledgers, id, l)
    end
    return l
end

-- "113.00" -> 11300 (amounts arrive as decimal strings; the stand-in keeps cents)
local function cents(amount)
    local units, frac = tostring(amount or ""):match("^(%d+)%.?(%d*)$")
    if not units or #frac > 2 then
        return nil
    end
    return tonumber(units) * 100 + tonumber((frac .. "00"):sub(1, 2))
end

-- The work of each step: returns status, body (404: not known yet, never remembered).
local EFFECTS = {
    reserve = function(l)
        l.reserved, l.reservations = l.reserved + 1, l.reservations + 1
        return 200, {}
    end,
    release = function(l)
        if l.reserved == 0 then
            return 200, { released = false }
        end
        l.reserved, l.releases = l.reserved - 1, l.releases + 1
        return 200, { released = true }
    end,
    charge = function(l, body)
        local c = cents(body.amount)
        if not c then
            return 422, { error = "bad amount" }
        end
        l.charged_cents = l.charged_cents + c
        return 200, { payment_id = "pay-" .. tostring(body.order_id) }
    end,
    refund = function(l, body, b)
        local due = l.charged_cents - l.refunded_cents
        if b.unknown or l.charged_cents == 0 then
            return 404, { error = "unknown charge" }
        end
        l.refunded_cents = l.refunded_cents + due
        return 200, { refunded = due > 0, order_id = body.order_id }
    end,
    ship = function(l)
        l.active_shipments, l.shipments = l.active_shipments + 1, l.shipments + 1
        return 200, {}
    end,
    ship_cancel = function(l, _, b)
        if b.unknown or l.active_shipments == 0 then
            return 404, { error = "unknown shipment" }
        end
        l.active_shipments, l.shipment_cancels = l.active_shipments - 1, l.shipment_cancels + 1
        return 200, { cancelled = true }
    end,
    notify = function(l, body)
        l.notifications[#l.notifications + 1] = body.type
        return 200, {}
    end,
}

local function sleep(ms)
    if ms and ms > 0 then
        async.sleep(ms)
    end
end

-- Calls of each step being answered right now (on this worker): each logged call records
-- how many were in flight when it arrived, so a test can see a caller's concurrency.
local in_flight = {}

local function answer(step, req, order_id)
    local b = behaviour[step] or {}
    local key = req:header("idempotency-key")
    local body = req:json()
    if type(body) ~= "table" then
        return response.error(400, "expected a JSON object")
    end
    put(calls, calls.next, { step = step, idempotency_key = key, request_id = req:header("x-request-id"),
                             body = body, path = req.path, in_flight = in_flight[step] })
    local delay = b.delay_ms or SETTINGS.latency_ms
    local remembered = key and step .. "\0" .. key
    local previous = remembered and answers.map[remembered]
    if previous then
        sleep(delay)
        if previous == IN_FLIGHT then
            return response.error(503, step .. " with this Idempotency-Key is in progress")
        end
        return previous
    end
    if math.random() < (b.fail_rate or SETTINGS.fail_rate) then
        sleep(delay)
        return response.error(503, step .. " is unavailable (stand-in failure)")
    end
    local resp
    if b.status and (b.status < 200 or b.status >= 300) then
        resp = response.error(b.status, step .. " refused (stand-in)")
    else
        if remembered then
            put(answers, remembered, IN_FLIGHT)
        end
        local late = b.apply_after_ms or 0
        sleep(late)
        local status, out = EFFECTS[step](ledger(order_id or body.order_id or (body.data or {}).order_id), body, b)
        out.ok, out.step = status < 300, step
        resp = response.json(status == 200 and (b.status or 200) or status, out)
        delay = delay - late
    end
    if remembered then
        -- a failure or a "not known yet" is not an answer to replay
        put(answers, remembered, resp.status < 500 and resp.status ~= 404 and resp or nil)
    end
    sleep(delay)
    return resp
end

local function handle(step, req, order_id)
    in_flight[step] = (in_flight[step] or 0) + 1
    local ok, resp = pcall(answer, step, req, order_id)
    in_flight[step] = in_flight[step] - 1
    if not ok then
        error(resp, 0)
    end
    return resp
end

function _M.reserve(req) return handle("reserve", req) end
function _M.release(req) return handle("release", req) end
function _M.charge(req) return handle("charge", req) end
function _M.refund(req) return handle("refund", req, req.params.order_id) end
function _M.ship(req) return handle("ship", req) end
function _M.ship_cancel(req) return handle("ship_cancel", req, req.params.order_id) end
function _M.notify(req) return handle("notify", req) end

function _M.calls()
    local list = response.array()
    for i = calls.first, calls.next - 1 do
        list[#list + 1] = calls.map[i]
    end
    return response.json(200, { calls = list })
end

function _M.ledger()
    return response.json(200, { orders = ledgers.map })
end

function _M.reset()
    calls = bounded(SETTINGS.call_log)
    return response.json(200, { ok = true })
end

function _M.set_behaviour(req)
    local value, err = req:json()
    if type(value) ~= "table" then
        return response.error(400, err or "expected an object")
    end
    behaviour = value
    return response.json(200, { behaviour = behaviour })
end

return _M
