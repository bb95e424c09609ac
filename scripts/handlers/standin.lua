-- standin: in-memory stand-ins for inventory, payment, shipping and notification.
--
-- Each step records the call (step, Idempotency-Key, X-Request-Id, body) and answers
-- 200 {"ok": true, ...} after STANDIN_LATENCY_MS, failing with 503 at STANDIN_FAILURE_RATE.
-- A repeated Idempotency-Key gets the first (non-5xx) answer again without doing the step
-- twice, as the real services promise. PUT /_behaviour { "<step>": { "status": 409,
-- "delay_ms": 3000, "fail_rate": 0.5 } } overrides a step ({} resets all). State lives in
-- this process only: a stand-in, not a service.

local async = require("lib.async")
local config = require("lib.config")
local response = require("lib.response")

local _M = {}

local DEFAULT_LATENCY = config.STANDIN_LATENCY_MS
local DEFAULT_FAIL_RATE = config.STANDIN_FAILURE_RATE

local calls = {}
local answers = {} -- step .. key -> first response
local behaviour = {}

local function handle(step, req, extra)
    local b = behaviour[step] or {}
    local key = req:header("idempotency-key")
    local body = req:json()
    calls[#calls + 1] = { step = step, idempotency_key = key, request_id = req:header("x-request-id"),
                          body = body, path = req.path }
    local delay = b.delay_ms or DEFAULT_LATENCY
    if delay > 0 then
        async.sleep(delay)
    end
    if key and answers[step .. "\0" .. key] then
        return answers[step .. "\0" .. key]
    end
    if math.random() < (b.fail_rate or DEFAULT_FAIL_RATE) then
        return response.error(503, step .. " is unavailable (stand-in failure)")
    end
    local resp
    if b.status and (b.status < 200 or b.status >= 300) then
        resp = response.error(b.status, step .. " refused (stand-in)")
    else
        local out = { ok = true, step = step }
        for k, v in pairs(extra or {}) do
            out[k] = v
        end
        resp = response.json(b.status or 200, out)
    end
    if key and resp.status < 500 then -- a failure is not an answer to replay
        answers[step .. "\0" .. key] = resp
    end
    return resp
end

function _M.reserve(req) return handle("reserve", req) end
function _M.release(req) return handle("release", req) end
function _M.charge(req) return handle("charge", req, { payment_id = "pay-" .. #calls }) end
function _M.refund(req) return handle("refund", req, { order_id = req.params.order_id }) end
function _M.ship(req) return handle("ship", req) end
function _M.notify(req) return handle("notify", req) end

function _M.calls()
    return response.json(200, { calls = response.array(calls) })
end

function _M.reset()
    calls, answers = {}, {}
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
