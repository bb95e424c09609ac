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
--
-- Metrics (lib.metrics): every call is counted by service, operation (opts.operation: reserve,
-- charge, release, refund, ship, ship_cancel, notify) and outcome (ok, refused, unavailable,
-- or circuit_open when the breaker refused it without a call) and timed when it was made.
-- orderservice_circuit_breaker_state{service} is 0 closed, 1 open, 2 half-open (a probe
-- is out); each worker reports its breaker whenever it admits or records a call, and the
-- scrape shows the state reported last (a worker that stopped calling does not keep an
-- old "open" alive once another has seen the service answer).

local http = require("lib.http")
local log = require("lib.log")
local metrics = require("lib.metrics")
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

local REQUESTS = metrics.counter("orderservice_downstream_requests_total",
    "Calls to downstream services, by service, operation and outcome (circuit_open: refused by the breaker, not sent).",
    { "service", "operation", "outcome" })
local DURATION = metrics.histogram("orderservice_downstream_request_duration_seconds",
    "Time of downstream calls that were sent, by service and operation.", { "service", "operation" },
    { buckets = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 } })
local BREAKER_STATE = metrics.gauge("orderservice_circuit_breaker_state",
    "Circuit breaker per downstream service: 0 closed, 1 open, 2 half-open (as last reported by a worker).",
    { "service" }, { aggregate = "latest" })
local CLOSED, OPEN, HALF_OPEN = 0, 1, 2

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
        BREAKER_STATE:set(CLOSED, service)
        return
    end
    b.failures = b.failures + 1
    if b.failures >= BREAKER_FAILURES then
        if b.failures == BREAKER_FAILURES then
            log.warn("circuit opened", { service = service, cooldown_ms = BREAKER_COOLDOWN_MS })
        end
        b.open_until = now_ms() + BREAKER_COOLDOWN_MS
        BREAKER_STATE:set(OPEN, service)
    else
        BREAKER_STATE:set(CLOSED, service)
    end
end

-- "/7/refund/" -> "refund": the last segment that is not a number, for calls that name no operation.
local function operation_of(path)
    local op = path:match("([%a_]+)/*$")
    return op or "call"
end

-- call(service, path, body, opts): opts.key (Idempotency-Key, required), opts.request_id,
-- opts.refusals (set of statuses that are business refusals; default: any 4xx),
-- opts.operation (the metrics' operation label; default: from the path).
-- Returns outcome and, for "ok" and "refused", the response; for "unavailable", an error
-- { message } (a 5xx names its status there).
function _M.call(service, path, body, opts)
    local operation = opts.operation or operation_of(path)
    local base = _M.services[service]
    if not base then
        REQUESTS:inc(service, operation, "unavailable")
        return "unavailable", { message = service .. " service URL is not configured" }
    end
    local b = breaker(service)
    if not admit(b) then
        REQUESTS:inc(service, operation, "circuit_open")
        return "unavailable", { message = service .. " circuit is open" }
    end
    if b.probing then
        BREAKER_STATE:set(HALF_OPEN, service)
    end
    local started = C.os_monotonic_us()
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
    REQUESTS:inc(service, operation, outcome)
    DURATION:observe(tonumber(C.os_monotonic_us() - started) / 1e6, service, operation)
    if outcome ~= "ok" then
        log.warn("downstream call failed", { service = service, path = path, outcome = outcome,
                                             status = res and res.status, error = err and err.message,
                                             request_id = opts.request_id })
    end
    if outcome == "unavailable" then
        return outcome, err
    end
    return outcome, res
end

function _M.breaker_state(service)
    local b = breaker(service)
    return b.failures >= BREAKER_FAILURES and (now_ms() < b.open_until and "open" or "half-open") or "closed"
end

return _M
