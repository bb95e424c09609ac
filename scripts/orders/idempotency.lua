-- idempotency.lua - Idempotency-Key support for POST endpoints (table idempotency_keys).
--
--   local claim, resp = idempotency.claim(scope, key, fingerprint)
--   if resp then return resp end           -- a replay, or a 409 / 422 / 503
--   ... do the work; inside its transaction: idempotency.finish(claim, resp)
--   or, when the work failed with a 5xx: idempotency.release(claim)
--
-- The claim is its own autocommitted INSERT ... ON CONFLICT, so a concurrent request with
-- the same key sees it at once and gets 409 while the first one runs. The fingerprint is
-- hashed by PostgreSQL (md5) and compared on every later use of the key: a different
-- request under the same key is a 422. A finished key replays the stored status and body
-- with Idempotent-Replayed: true for 24 hours; after that (expires_at) the key is free
-- again and the next claim takes the row over.
--
-- What is stored: every answer the endpoint itself gave (2xx, and 404 / 409 once the work
-- started). Requests refused by validation never claim a key (the handler validates first,
-- as Stripe does), so a client may fix its body and retry with the same key. A 5xx
-- releases the key: nothing was done, and the retry should run for real.

local db = require("lib.db")
local order_sql = require("orders.sql")
local response = require("lib.response")

local _M = {}

local CLAIM = db.statement("idem_claim", order_sql.IDEM_CLAIM)
local READ = db.statement("idem_read", order_sql.IDEM_READ)
local FINISH = db.statement("idem_finish", order_sql.IDEM_FINISH)
local RELEASE = db.statement("idem_release", order_sql.IDEM_RELEASE)

local function unavailable(err)
    return response.error(503, "database unavailable: " .. tostring(err.message))
end

-- Returns claim (a table to hand to finish/release) or nil, response.
function _M.claim(scope, key, fingerprint)
    -- Two rounds: a key that expires or is released between our INSERT and our SELECT is
    -- simply claimed on the second try.
    for _ = 1, 2 do
        local rows, err = db.query(CLAIM, scope, key, fingerprint)
        if not rows then
            return nil, unavailable(err)
        end
        if rows[1] then
            return { scope = scope, key = key }
        end
        rows, err = db.query(READ, scope, key, fingerprint)
        if not rows then
            return nil, unavailable(err)
        end
        local row = rows[1]
        if row then
            if not row.same_request then
                return nil, response.error(422, "Idempotency-Key was already used for a different "
                                                .. "request", { field = "Idempotency-Key" })
            elseif row.status ~= "done" then
                return nil, response.error(409, "a request with this Idempotency-Key is still "
                                                .. "in progress", { field = "Idempotency-Key" })
            end
            return nil, response.text(row.response_status, row.response_body, {
                ["content-type"] = "application/json",
                ["idempotent-replayed"] = "true",
            })
        end
    end
    return nil, response.error(409, "Idempotency-Key is busy, retry", { field = "Idempotency-Key" })
end

-- Stores resp as the key's answer. Call it inside the transaction that did the work, so
-- the work and its recorded answer commit together. Returns true, or nil, err.
function _M.finish(claim, resp)
    local rows, err = db.query(FINISH, claim.scope, claim.key, resp.status, resp.body)
    if not rows then
        return nil, err
    end
    claim.finished = true
    return true
end

-- Forgets the claim (after a failure that changed nothing).
function _M.release(claim)
    db.query(RELEASE, claim.scope, claim.key)
end

return _M
