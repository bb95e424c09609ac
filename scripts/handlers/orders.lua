-- orders: the Orders REST API (issue 4). Routes are in routes.lua.
--
--   GET   /v1/orders/                        list: filters, search, sort, pages
--   POST  /v1/orders/ and /v1/orders/create/ create (Idempotency-Key aware)
--   GET   /v1/orders/{id}/ and .../details/  one order with its items
--   GET   /v1/orders/{id}/events/            the order's timeline
--   PATCH /v1/orders/{id}/update/            change statuses, per the C core's rules
--                                            (to CANCELLED: the cancel's path)
--   POST  /v1/orders/{id}/cancel/            cancel (Idempotency-Key aware)
--   GET   /v1/orders/my-orders/{customer_id}/ a customer's history
--
-- Input checks live in orders.input, SQL in orders.sql, money in orders.money and the
-- status rules in orders.rules; this file wires them to HTTP. Failures travel as
-- nil, err and become a response here, at the edge.
--
-- Who may do what is lib.principal's (req.principal, from the auth filter): each handler
-- asks it at its top, before anything is read for or written by the caller. A customer's
-- request about another customer's order is a 404 (it does not learn the order exists),
-- about another customer's history or a create for another customer a 403 (the id is the
-- caller's own input), and a list is narrowed to the caller's orders. No principal (a
-- route an operator opened with auth = false) sees and changes nothing.

local cjson = require("cjson.safe")
local db = require("lib.db")
local host = require("lib.host")
local idempotency = require("orders.idempotency")
local input = require("orders.input")
local log = require("lib.log")
local money = require("orders.money")
local order_sql = require("orders.sql")
local pagination = require("orders.pagination")
local principal = require("lib.principal")
local query = require("lib.query")
local response = require("lib.response")
local rules = require("orders.rules")
local saga = require("orders.saga")

local format = string.format
local ipairs, pairs, unpack = ipairs, pairs, unpack

local _M = {}

local DETAILS = db.statement("orders_details", order_sql.DETAILS)
local LOCK = db.statement("orders_lock", order_sql.LOCK)
local INSERT_ORDER = db.statement("orders_insert", order_sql.INSERT_ORDER)
local INSERT_ITEMS = db.statement("orders_insert_items", order_sql.INSERT_ITEMS)
local INSERT_EVENT = db.statement("orders_insert_event", order_sql.INSERT_EVENT)
local INSERT_SAGA = db.statement("orders_insert_saga", order_sql.INSERT_SAGA)
local UPDATE_STATUS = db.statement("orders_update_status", order_sql.UPDATE_STATUS)
local OWNER = db.statement("orders_owner", order_sql.OWNER)
local SKU_LOOKUP = db.statement("orders_sku_lookup", order_sql.SKU_LOOKUP)

local null = db.null

-- ---- responses ----

local function bad_request(err)
    return response.error(400, err.message, { field = err.field })
end

-- A body that is not strict JSON (400) or not declared application/json (415).
local function body_error(message, status)
    if status == 415 then
        return response.error(415, message, { field = "Content-Type" })
    end
    return bad_request({ field = "body", message = message })
end

local function not_found(id)
    return response.error(404, "order not found", { order_id = id })
end

-- A database failure: 503 when the database cannot be reached (the client may retry),
-- otherwise a logged 500 carrying the request id.
local function db_failure(req, err)
    if db.unavailable(err) then
        return response.error(503, "database unavailable: " .. tostring(err.message))
    end
    log.error("orders query failed", { request_id = req.request_id, error = err.message,
                                       sqlstate = err.sqlstate })
    return response.json(500, { error = "internal error", request_id = req.request_id })
end

local function actor(req)
    return principal.actor(req.principal)
end

local function forbidden(message, field)
    return response.error(403, message, field and { field = field })
end

-- nil when the caller may read (see, cancel) order id, else the answer: 404 for a missing
-- order and for another customer's alike, or a database failure. Staff skip the lookup.
-- An order's customer never changes, so a check before the work holds for the work.
local function check_owner(req, id)
    if principal.is_staff(req.principal) then
        return nil
    end
    local rows, err = db.query(OWNER, id)
    if not rows then
        return db_failure(req, err)
    elseif not rows[1] or not principal.can_read_customer(req.principal, rows[1].customer_id) then
        return not_found(id)
    end
    return nil
end

-- ---- representation ----
--
-- An order's representation is built by PostgreSQL, in one place (orders.sql, DETAILS and
-- list): reads pass its JSON text through; the writes, whose saga steps read the order's
-- fields, decode it.

-- The order's row of DETAILS (customer_id, representation), or nil (missing), or nil, err.
-- From the primary unless from_replica: only a plain read that needs no write of its own may
-- lag (DATABASE_READ_URL).
local function load_order_row(id, from_replica)
    local rows, err = (from_replica and db.read or db.query)(DETAILS, id)
    if not rows then
        return nil, err
    end
    return rows[1]
end

-- The order's representation as a table, or nil (missing), or nil, err.
local function load_order(id)
    local row, err = load_order_row(id)
    if not row then
        return nil, err
    end
    local view = assert(cjson.decode(row.representation))
    response.array(view.items) -- [] again when re-encoded, not {}
    return view
end

-- ---- Idempotency-Key ----

-- Runs work(claim) under the request's Idempotency-Key, if it has one. work returns a
-- response and, on success, records it with idempotency.finish inside its transaction.
-- existing(order_id) answers a retry whose key made an order but has no answer stored yet.
local function idempotent(req, endpoint, fingerprint, work, existing)
    local key, err = input.idempotency_key(req:header("idempotency-key"))
    if err then
        return bad_request(err)
    elseif not key then
        return work(nil)
    end
    -- The caller is part of the scope: two callers' keys never meet, so one cannot replay
    -- (or block) another's request by guessing its key.
    local scope = actor(req) .. " " .. endpoint
    local claim, resp, order_id = idempotency.claim(scope, key, fingerprint)
    if order_id then
        return existing and existing(order_id) or resp
    elseif not claim then
        return resp
    end
    local ok, result = pcall(work, claim)
    if not ok or (result.status >= 500 and not claim.finished) then
        idempotency.release(claim) -- a no-op once the key made an order
        if not ok then
            error(result, 0)
        end
    elseif not claim.finished then
        -- an answer given without a transaction of its own (404): record it now
        local stored, ferr = idempotency.finish(claim, result)
        if not stored then
            log.warn("could not record an idempotent answer", { request_id = req.request_id,
                                                                 error = ferr.message })
        end
    end
    return result
end

-- ---- create ----

-- Writes the order PENDING with its items, its first event and its saga row; returns the
-- new order's id.
local function insert_order(order, who, claim)
    local t = order.totals
    local rows, err = db.query(INSERT_ORDER, order.customer_id, money.format(t.total),
                               money.format(t.subtotal), money.format(t.tax),
                               money.format(t.shipping))
    if not rows then
        return nil, err
    end
    local id = rows[1].order_id
    -- ids and quantities go as strings too: cjson would write big numbers in exponent form
    local items = {}
    for i, item in ipairs(order.items) do
        items[i] = { product_id = format("%d", item.product_id), sku = item.sku,
                     quantity = format("%d", item.quantity),
                     unit_price = money.format(item.unit_price) }
    end
    rows, err = db.query(INSERT_ITEMS, id, cjson.encode(items))
    if rows then
        rows, err = db.query(INSERT_EVENT, id, "order_status", nil, "PENDING", who, "created")
    end
    if rows then
        rows, err = db.query(INSERT_SAGA, id)
    end
    if rows and claim then
        rows, err = idempotency.attach(claim, id)
    end
    if not rows then
        return nil, err
    end
    return id
end

-- The create's answer for the order as the saga left it.
local function create_response(status, message, view, headers)
    if status == 201 then
        return response.json(201, view, headers)
    end
    return response.json(status, { error = message, order = view }, headers)
end

-- A retried create whose key made an order but stored no answer (its process died before
-- the saga's outcome was recorded): the order as it stands, never a second order.
local function existing_order(req, id)
    local view, err = load_order(id)
    if err then
        return db_failure(req, err)
    elseif not view then
        return not_found(id)
    end
    local status, message = 201, nil
    if view.order_status == "PENDING" then
        status, message = 202, "order is still being created"
    elseif view.order_status == "CANCELLED" then
        status, message = 409, "order was cancelled"
    end
    return create_response(status, message, view, { ["idempotent-replayed"] = "true" })
end

-- Create: validate, record the order PENDING, run the saga (reserve, charge; see orders.saga),
-- answer with the order as the saga left it: 201, or the saga's failure status with the
-- recorded order in the body. Nothing is written for input that fails validation.
function _M.create(req)
    local body, jerr, jstatus = req:json_body()
    if jerr then
        return body_error(jerr, jstatus)
    end
    local config = host.config()
    local order, err = input.create(body, config.tax_ppm, config.shipping_cents)
    if not order then
        return bad_request(err)
    elseif not principal.can_act_for_customer(req.principal, order.customer_id) then
        return forbidden("cannot create an order for another customer", "customer_id")
    end
    return idempotent(req, "orders.create", "create\n" .. req.body, function(claim)
        local id, ierr = db.transaction(function()
            return insert_order(order, actor(req), claim)
        end)
        if not id then
            return db_failure(req, ierr)
        end
        if claim then
            claim.order_id = id
        end
        saga.crash_point("after_insert")
        local view, lerr = load_order(id)
        if not view then
            -- The saga never started: recovery cancels the order; a retry answers with it.
            return db_failure(req, lerr or { kind = "query", message = "the new order vanished" })
        end
        -- The answer is built and stored in the transaction that records the saga's outcome.
        local result, serr = saga.create(view, req.request_id, function(status, message)
            local current = assert(load_order(id))
            local resp = create_response(status, message, current)
            if claim then
                assert(idempotency.finish(claim, resp))
            end
            return resp
        end)
        if not result then
            log.error("could not record the saga's outcome", { request_id = req.request_id, order_id = id,
                                                               error = tostring(serr) })
            return response.error(503, "could not record the order's outcome; retry with the same "
                                       .. "Idempotency-Key to see it", { order_id = id })
        end
        saga.crash_point("after_saga")
        log.info("order created", { request_id = req.request_id, order_id = id, status = result.status })
        return result.resp
    end, function(id)
        return existing_order(req, id)
    end)
end

-- ---- details ----

function _M.details(req)
    local id = req.params.id
    local row, err = load_order_row(id, true)
    if err then
        return db_failure(req, err)
    elseif not row or not principal.can_read_customer(req.principal, row.customer_id) then
        return not_found(id)
    end
    return response.json_text(200, row.representation)
end

-- ---- timeline ----

local TIMELINE = db.statement("orders_timeline", order_sql.TIMELINE)

-- GET /v1/orders/{id}/events/: status changes, saga steps and deliveries, in order.
function _M.events(req)
    local id = req.params.id
    local refused = check_owner(req, id)
    if refused then
        return refused
    end
    local rows, err = db.query(TIMELINE, id)
    if not rows then
        return db_failure(req, err)
    elseif not rows[1] then
        return not_found(id)
    end
    return response.json_text(200, rows[1].timeline)
end

-- ---- status changes (update and cancel) ----

local KIND = input.UPDATE_KIND

local function conflict(field, from, to, message)
    return response.error(409, message or format("%s cannot change from %s to %s", field,
                                                 tostring(from), to),
                          { field = field, from = from, to = to })
end

-- Plans the changes against the locked row: returns the list of events
-- { field, from, to } (empty when nothing changes) and the new statuses, or nil, response.
-- The order status goes first; the shipping status it implies (SHIPPED -> Shipped,
-- DELIVERED -> Delivered, CANCELLED -> Cancelled) follows under the shipping rules; then
-- the payment status, then an explicit shipping status, checked from where the order
-- status left it.
local function plan(row, changes)
    local current = { order_status = row.order_status, payment_status = row.payment_status,
                      shipping_status = row.shipping_status }
    local events = {}
    local function move(field, to, cause)
        local from = current[field]
        local verdict = rules.transition(KIND[field], from, to)
        if verdict == "same" then
            return "same"
        elseif verdict ~= "allowed" then
            return nil, conflict(field, from, to)
        end
        events[#events + 1] = { field = field, from = from, to = to, cause = cause }
        current[field] = to
        return "moved"
    end
    local ok, resp
    if changes.order_status then
        ok, resp = move("order_status", changes.order_status)
        if not ok then
            return nil, resp
        end
        local implied = ok == "moved" and rules.shipping_for_order(changes.order_status)
        if implied then
            ok, resp = move("shipping_status", implied, "order_status " .. changes.order_status)
            if not ok then
                return nil, resp
            end
        end
    end
    for _, field in ipairs({ "payment_status", "shipping_status" }) do
        if changes[field] then
            ok, resp = move(field, changes[field])
            if not ok then
                return nil, resp
            end
        end
    end
    return events, current
end

-- In one transaction: lock the order, check every change, write them and their events,
-- answer with the new representation. opts: reason, refuse_same (cancel: 409 when the
-- order is already there), status_message (cancel's envelope), in_transaction (called
-- with the row as it was and the new view when something changed, inside the transaction).
local function change_status(req, id, changes, opts)
    local who = actor(req)
    local changed -- the events written, counted once the transaction has committed
    local resp, err = db.transaction(function()
        local rows, err = db.query(LOCK, id)
        if not rows then
            return nil, err
        end
        local row = rows[1]
        if not row then
            return not_found(id)
        end
        if opts.refuse_same and row.order_status == changes.order_status then
            return conflict("order_status", row.order_status, changes.order_status,
                            "order is already " .. row.order_status)
        end
        if changes.order_status ~= "CANCELLED" then
            -- While the saga runs it alone moves the order on; only a cancel may interrupt.
            local running, serr = saga.running(id)
            if serr then
                return nil, serr
            elseif running then
                return response.error(409, "order is still being created; only a cancel may "
                                           .. "change it now", { field = "order_status" })
            end
        end
        local events, current = plan(row, changes)
        if not events then
            return current -- the conflict response
        end
        if #events > 0 then
            local set = {}
            for _, e in ipairs(events) do
                set[e.field] = current[e.field]
            end
            rows, err = db.query(UPDATE_STATUS, id, set.order_status, set.payment_status,
                                 set.shipping_status)
            if not rows then
                return nil, err
            end
            for _, e in ipairs(events) do
                local reason = opts.reason
                if e.cause then
                    reason = reason and (reason .. " (follows " .. e.cause .. ")")
                        or ("follows " .. e.cause)
                end
                rows, err = db.query(INSERT_EVENT, id, e.field, e.from, e.to, who, reason)
                if not rows then
                    return nil, err
                end
            end
        end
        local view
        view, err = load_order(id)
        if not view then
            return nil, err or { kind = "query", message = "the order vanished" }
        end
        if opts.in_transaction and #events > 0 then
            local ok, herr = pcall(opts.in_transaction, row, view)
            if not ok then
                return nil, { kind = "query", message = tostring(herr) }
            end
        end
        changed = events
        if opts.status_message then
            return response.json(200, { status = opts.status_message, order = view })
        end
        return response.json(200, view)
    end)
    if resp and changed then
        saga.count_changes(changed)
    end
    return resp, err
end

-- Cancel, for POST .../cancel/ and PATCH {"order_status": "CANCELLED"} alike: CANCELLED
-- and, in the same transaction, the saga's compensation (saga.on_cancel: release, refund
-- when PAID, shipping cancel, ORDER_CANCELLED; undelivered ship / ORDER_CREATED voided; or,
-- while the saga runs, only the intent, which the saga acts on at its next step). What can
-- go at once is delivered right after the commit; the rest is the outbox job's. The answer
-- shows the order after that. opts: reason, refuse_same, envelope (cancel's answer shape).
local function cancel_order(req, id, opts)
    local work
    local message = opts.envelope and "Order cancelled successfully" or nil
    local resp, err = change_status(req, id, { order_status = "CANCELLED" }, {
        reason = opts.reason, refuse_same = opts.refuse_same, status_message = message,
        in_transaction = function(before, view)
            work = saga.on_cancel(view, before, req.request_id)
        end,
    })
    if not resp then
        return nil, err
    end
    if work then
        saga.deliver_now(work)
        local view = load_order(id)
        if view then
            resp = response.json(200, message and { status = message, order = view } or view)
        end
    end
    return resp
end

function _M.update(req)
    -- routes.lua lets only admin and service in; refused here too, so an edit of routes.lua
    -- that drops those roles cannot let a customer mark an order paid or shipped.
    if not principal.is_staff(req.principal) then
        return forbidden("status changes are for admin and service callers")
    end
    local body, jerr, jstatus = req:json_body()
    if jerr then
        return body_error(jerr, jstatus)
    end
    local changes, err = input.update(body)
    if not changes then
        return bad_request(err)
    end
    local resp
    if changes.order_status == "CANCELLED" then
        if changes.payment_status or changes.shipping_status then
            return bad_request({ field = "order_status", message = "CANCELLED cannot be combined with "
                                 .. "other changes: payment and shipping follow from the cancel" })
        end
        resp, err = cancel_order(req, req.params.id, {})
    else
        resp, err = change_status(req, req.params.id, changes, {})
    end
    if not resp then
        return db_failure(req, err)
    end
    return resp
end

function _M.cancel(req)
    -- First, so another customer's order is a 404 before its key is claimed or anything moves.
    local refused = check_owner(req, req.params.id)
    if refused then
        return refused
    end
    -- The body is optional; one that is sent must be JSON, declared as such.
    if req.body:find("%S") and not req:is_json() then
        return body_error("Content-Type must be application/json", 415)
    end
    local body, jerr = req:json()
    local args, err = input.cancel(req.body, body, jerr)
    if not args then
        return bad_request(err)
    end
    local id = req.params.id
    return idempotent(req, "orders.cancel", format("cancel %d\n", id) .. req.body, function(claim)
        local resp, terr = cancel_order(req, id, { reason = args.reason, refuse_same = true, envelope = true })
        if not resp then
            return db_failure(req, terr)
        end
        if claim then
            local ok, ferr = idempotency.finish(claim, resp)
            if not ok then
                log.warn("could not record an idempotent answer", { request_id = req.request_id,
                                                                     error = ferr.message })
            end
        end
        return resp
    end)
end

-- ---- lists ----

-- A link to this list with some query arguments changed (false removes one).
local function list_link(req, changes)
    local args = {}
    for name, values in pairs(req:query()) do
        args[name] = values
    end
    for name, value in pairs(changes) do
        args[name] = value or nil
    end
    return req.path .. "?" .. query.encode(args)
end

-- The empty page, as the list query answers it: no query runs when no SKU matches a search.
local NO_ROWS = { { total_count = 0, fetched = 0, last_id = null, results = "[]" } }

-- The rows of the list query, or nil, err. A text search looks its SKUs up first (orders.sql,
-- "the text search"): with none found no order matches, and the empty page needs no query.
local function list_rows(args)
    local search = args.search
    if search and search.pattern then
        local rows, err = db.read(SKU_LOOKUP, search.pattern)
        if not rows then
            return nil, err
        elseif not order_sql.sku_search(search, rows[1]) then
            return NO_ROWS
        end
    end
    local sql, params = order_sql.list(args)
    return db.read(db.statement("orders_list", sql), unpack(params, 1, #params))
end

local function list_response(req, args)
    local rows, err = list_rows(args)
    if not rows then
        return db_failure(req, err)
    end
    local page = rows[1]
    local out = pagination.envelope(args, page, list_link, req, null)
    return response.json_with_field(200, out, "results", page.results)
end

function _M.list(req)
    local args, err = input.list_args(req)
    if not args then
        return bad_request(err)
    end
    -- The caller's scope is one more filter: a customer asking for another customer_id gets
    -- the empty page that filter and scope intersect to (-1 matches no customer), as any
    -- filter matching nothing would, rather than a 403 for a search.
    local own = principal.list_scope(req.principal)
    if own then
        if args.customer_id and args.customer_id ~= own then
            own = -1
        end
        args.customer_id = own
    end
    return list_response(req, args)
end

-- The history always answers JSON for now; the HTML page (Accept: text/html) comes later.
function _M.history(req)
    if not principal.can_read_customer(req.principal, req.params.customer_id) then
        return forbidden("cannot read another customer's orders", "customer_id")
    end
    local args, err = input.history_args(req, req.params.customer_id)
    if not args then
        return bad_request(err)
    end
    return list_response(req, args)
end

return _M
