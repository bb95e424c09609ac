-- downstream.lua - the services an order touches (inventory, payment, shipping,
-- notification): their URLs, one call convention, and a circuit breaker per service.
--
-- Every call is JSON, carries an Idempotency-Key unique per order and step (so a retry is
-- safe) and the request's X-Request-Id. An answer is classified:
--   "ok"          2xx
--   "refused"     a business refusal (the 4xx the step's contract names)
--   "unavailable" 5xx, timeout, refused connection, garbage, or the breaker is open
--                 (the work may have happened: callers treat it as "outcome unknown")
-- After BREAKER_FAILURES consecutive unavailable answers a service's breaker opens: calls
-- fail fast for BREAKER_COOLDOWN_MS, then one probe call decides. Breakers are per worker:
-- they only save time, nothing depends on them being shared.

local http = require("lib.http")
local log = require("lib.log")
local C = require("lib.core")

local config = require("lib.config")

local _M = {}

local BREAKER_FAILURES = config.BREAKER_FAILURES
local BREAKER_COOLDOWN_MS = config.BREAKER_COOLDOWN_MS

-- An unset URL is "" in lib.config: nil here, so the call reports the service unconfigured.
local function trim(url)
    return url ~= "" and (url:gsub("/+$", "")) or nil
end

_M.services = {
    inventory = trim(config.INVENTORY_SERVICE_URL),
    payment = trim(config.PAYMENT_SERVICE_URL),
    shipping = trim(config.SHIPPING_SERVICE_URL),
    notification = config.NOTIFICATION_SERVICE_URL ~= "" and config.NOTIFICATION_SERVICE_URL or nil, -- the full endpoint
}

local breakers = {} -- service -> { failures, open_until, probing }

local function breaker(service)
    local b = breakers[service]
    if not b then
        b = { failures = 0, open_until = 0, probing = false }
        breakers[service] = b
    end
    return b
end

local function now_ms()
    return tonumber(C.os_monotonic_ms())
end

-- Whether a call may go out now; while open, only one probe at a time after the cool-down.
local function admit(b)
    if b.failures < BREAKER_FAILURES then
        return true
    end
    if now_ms() < b.open_until or b.probing then
        return false
    end
    b.probing = true
    return true
end

local function record(service, b, outcome)
    b.probing = false
    if outcome ~= "unavailable" then
        if b.failures >= BREAKER_FAILURES then
            log.info("circuit closed", { service = service })
        end
        b.failures = 0
        return
    end
    b.failures = b.failures + 1
    if b.failures >= BREAKER_FAILURES then
        if b.failures == BREAKER_FAILURES then
            log.warn("circuit opened", { service = service, cooldown_ms = BREAKER_COOLDOWN_MS })
        end
        b.open_until = now_ms() + BREAKER_COOLDOWN_MS
    end
end

-- call(service, path, body, opts): opts.key (Idempotency-Key, required), opts.request_id,
-- opts.refusals (set of statuses that are business refusals; default: any 4xx).
-- Returns outcome, res_or_err.
function _M.call(service, path, body, opts)
    local base = _M.services[service]
    if not base then
        return "unavailable", { message = service .. " service URL is not configured" }
    end
    local b = breaker(service)
    if not admit(b) then
        return "unavailable", { message = service .. " circuit is open" }
    end
    local headers = { ["Idempotency-Key"] = opts.key, ["X-Request-Id"] = opts.request_id or "none",
                      Accept = "application/json" }
    -- No retry here: a timeout may mean the service did the work, and the outbox retries
    -- later under the same key. The one safe immediate retry (a reused kept-alive
    -- connection failing before any response byte) belongs to the HTTP client in C.
    local res, err = http.request{ method = "POST", url = base .. path, headers = headers, json = body }
    local outcome
    if not res then
        outcome = "unavailable"
    elseif res.status >= 200 and res.status < 300 then
        outcome = "ok"
    elseif res.status >= 400 and res.status < 500 and (not opts.refusals or opts.refusals[res.status]) then
        outcome = "refused"
    else
        outcome = "unavailable"
        err = { message = ("%s answered %d"):format(service, res.status) }
    end
    record(service, b, outcome)
    if outcome ~= "ok" then
        log.warn("downstream call failed", { service = service, path = path, outcome = outcome,
                                             status = res and res.status, error = err and err.message,
                                             request_id = opts.request_id })
    end
    return outcome, res or err
end

function _M.breaker_state(service)
    local b = breaker(service)
    return b.failures >= BREAKER_FAILURES and (now_ms() < b.open_until and "open" or "half-open") or "closed"
end

return _M
