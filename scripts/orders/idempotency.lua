-- idempotency.lua - Idempotency-Key support for POST endpoints (table idempotency_keys).
--
--   local claim, resp, order_id = idempotency.claim(scope, key, fingerprint)
--   if resp then return resp end           -- a replay, or a 409 / 422 / 503
--   if order_id then ... end               -- the key made this order: answer with it
--   ... do the work; inside its transaction: idempotency.attach(claim, order_id) when it
--   creates an order, idempotency.finish(claim, resp) when it records the outcome;
--   or, when the work failed with a 5xx: idempotency.release(claim)
--
-- The claim is its own autocommitted INSERT ... ON CONFLICT, so a concurrent request with
-- the same key sees it at once and gets 409 while the first one runs. The fingerprint is
-- hashed by PostgreSQL (md5) and compared on every later use of the key: a different
-- request under the same key is a 422. A finished key replays the stored status and body
-- with Idempotent-Replayed: true for 24 hours; after that (expires_at) the key is free
-- again and the next claim takes the row over.
--
-- Crashes: a create records its order id on the key in the transaction that inserts the
-- order, and its final answer in the transaction that records the saga's outcome. A key
-- with an order is never released and never taken over as abandoned: a retry gets the
-- stored answer, or (the process died before the outcome) the order as it stands now.
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
local ATTACH = db.statement("idem_attach", order_sql.IDEM_ATTACH)

local function unavailable(err)
    return response.error(503, "database unavailable: " .. tostring(err.message))
end

-- Returns claim (a table to hand to attach/finish/release), or nil, response, or
-- nil, nil, order_id (the key made that order and has no stored answer yet).
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
            elseif row.status ~= "done" and row.order_id ~= db.null then
                return nil, nil, row.order_id
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

-- Records the order the claimed request created; call inside the inserting transaction.
function _M.attach(claim, order_id)
    local rows, err = db.query(ATTACH, claim.scope, claim.key, order_id)
    if not rows then
        return nil, err
    end
    return true
end

-- Forgets the claim (after a failure that changed nothing; a key with an order stays).
function _M.release(claim)
    if not claim.order_id then
        db.query(RELEASE, claim.scope, claim.key)
    end
end

return _M
