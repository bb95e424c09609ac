-- rate_limit filter: a token bucket per client (the principal's sub when auth has run,
-- else the peer address): `rate` requests a second on average, bursts of `burst`; beyond
-- that 429 with Retry-After. Routes naming the same `bucket` share one budget per client.
--
-- The buckets live in the worker's Lua VM: the limit is per worker (and so per replica,
-- times its WORKERS), and a reload starts them afresh. That makes it a guard against a
-- runaway client at no cost per request (no lock, no network hop), not an exact quota; an
-- exact cluster-wide quota belongs in the gateway or a shared store. See README.

local C = require("lib.core")
local response = require("lib.response")

local ceil, min, tonumber = math.ceil, math.min, tonumber

local _M = {
    PRIORITY = 9000, -- right after auth, so a signed-in client is limited as itself
    DESCRIPTION = "token bucket per client (principal, else address); 429 with Retry-After",
    schema = {
        rate = { type = "number", default = 20, min = 0.001, max = 1000000, description = "requests per second, on average" },
        burst = { type = "integer", default = 40, min = 1, max = 1000000, description = "requests allowed at once" },
        bucket = { type = "string", default = "default", match = "^[%w%-_.]+$", hint = "a plain name",
                   description = "routes with the same bucket share one budget per client" },
        by = { type = "string", default = "principal", one_of = { "principal", "address" },
               description = "principal: the token's sub when there is one, else the address" },
    },
}

local MAX_CLIENTS = 10000 -- beyond this, every bucket is dropped (full buckets forget nothing)
local buckets, count = {}, 0

-- Seconds on the monotonic clock; specs replace it.
function _M.now()
    return tonumber(C.os_monotonic_ms()) / 1000
end

function _M.reset()
    buckets, count = {}, 0
end

local function client_key(req, conf)
    local p = req.principal
    if conf.by == "principal" and p then
        return "p " .. p.role .. ":" .. p.sub
    end
    return "a " .. (req.remote_addr or "unknown")
end

function _M.before(req, conf)
    local key = conf.bucket .. " " .. client_key(req, conf)
    local now = _M.now()
    local b = buckets[key]
    if b == nil then
        if count >= MAX_CLIENTS then
            _M.reset()
        end
        b = { tokens = conf.burst, at = now }
        buckets[key] = b
        count = count + 1
    else
        b.tokens = min(conf.burst, b.tokens + (now - b.at) * conf.rate)
        b.at = now
    end
    if b.tokens < 1 then
        local wait = ceil((1 - b.tokens) / conf.rate)
        return response.error(429, "too many requests", { retry_after = wait })
            :header("retry-after", wait)
    end
    b.tokens = b.tokens - 1
    return nil
end

return _M
