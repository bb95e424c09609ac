-- openapi.lua - the OpenAPI 3.1 document of the service, built from the route table itself.
--
-- The paths and methods come from routes.lua (every route the service serves, as loaded);
-- what each handler takes and answers comes from OPERATIONS below, keyed by handler name; the
-- status vocabularies and limits come from the modules that enforce them (orders.rules,
-- orders.input); security and the filters' own errors (401, 403, 413, 429, 503) come from
-- each route's filter chain (lib.filters), so a route that turns auth off is documented
-- without a token. A route whose handler is not described here is left out of the document,
-- and tests/integration/test_api_docs.py fails on it (and on any documented query parameter
-- the validation refuses), so the reference cannot drift from the service.

local filters = require("lib.filters")
local input = require("orders.input")
local response = require("lib.response")
local rules = require("orders.rules")

local ipairs, pairs, type = ipairs, pairs, type
local format, gsub = string.format, string.gsub
local sort = table.sort

local _M = {}

local array = response.array

local function ref(name)
    return { ["$ref"] = "#/components/schemas/" .. name }
end

local function copy(list)
    local out = array()
    for i, v in ipairs(list) do
        out[i] = v
    end
    return out
end

local function with_all(list)
    local out = copy(list)
    table.insert(out, 1, "All")
    return out
end

-- ---- schemas ----

local MONEY = { type = "string", pattern = "^\\d+\\.\\d{2}$", description = "an amount with two decimals, as a string",
                examples = array({ "966.29" }) }
local ID = { type = "integer", minimum = 1, maximum = input.MAX_ID }

local function schemas()
    local order_status = { type = "string", enum = copy(rules.VALUES.order) }
    local payment_status = { type = "string", enum = copy(rules.VALUES.payment) }
    local shipping_status = { type = "string", enum = copy(rules.VALUES.shipping) }
    return {
        Money = MONEY,
        OrderStatus = order_status,
        PaymentStatus = payment_status,
        ShippingStatus = shipping_status,
        Item = {
            type = "object",
            required = array({ "product_id", "sku", "quantity", "unit_price" }),
            properties = {
                order_item_id = ID, product_id = ID,
                sku = { type = "string", minLength = 1, maxLength = input.MAX_SKU_CHARS },
                quantity = { type = "integer", minimum = 1, maximum = input.MAX_QUANTITY },
                unit_price = ref("Money"),
            },
        },
        Order = {
            type = "object",
            required = array({ "order_id", "customer_id", "order_status", "payment_status", "shipping_status",
                               "order_total", "created_at", "items" }),
            properties = {
                order_id = ID, customer_id = ID,
                order_status = ref("OrderStatus"), payment_status = ref("PaymentStatus"),
                shipping_status = ref("ShippingStatus"),
                order_total = ref("Money"),
                subtotal = { type = { "string", "null" } }, tax = { type = { "string", "null" } },
                shipping_fee = { type = { "string", "null" } },
                created_at = { type = "string", format = "date-time" },
                updated_at = { type = { "string", "null" }, format = "date-time" },
                items = { type = "array", items = ref("Item") },
            },
            examples = array({ {
                order_id = 1, customer_id = 44, order_status = "PENDING", payment_status = "FAILED",
                shipping_status = "Unknown", order_total = "966.29", subtotal = response.null, tax = response.null,
                shipping_fee = response.null, created_at = "2024-09-18T14:40:32+00:00",
                updated_at = "2024-09-18T14:40:32+00:00",
                items = array({ { order_item_id = 12, product_id = 105, sku = "SKU0095", quantity = 3,
                                  unit_price = "385.72" } }),
            } }),
        },
        OrderList = {
            type = "object",
            required = array({ "count", "page", "page_size", "results", "next", "previous" }),
            properties = {
                -- `after` (keyset pages) is not among the parameters: Swagger UI fills every
                -- parameter with its example, and `after` with `page` is a 400. A `next` link
                -- past the 1,000th order is a keyset link (docs/orders-api.md).
                count = { type = { "integer", "null" }, minimum = 0,
                          description = "orders matching, over all pages; exact up to 1,000 (a text search: 100), then that limit with count_capped; null on a keyset page (a next link with after=), which is not counted" },
                count_capped = { type = "boolean", enum = array({ true }), description = "present when more orders match than the list counts (1,000; a text search 100): count is that limit, \"at least\"" },
                page = { type = { "integer", "null" }, minimum = 1, description = "null on a keyset page" }, page_size = { type = "integer", minimum = 1 },
                results = { type = "array", items = ref("Order") },
                next = { type = { "string", "null" }, description = "relative link to the next page, keeping the other arguments" },
                previous = { type = { "string", "null" } },
            },
        },
        NewOrder = {
            type = "object", additionalProperties = false,
            required = array({ "customer_id", "items" }),
            properties = {
                customer_id = ID,
                items = {
                    type = "array", minItems = 1, maxItems = input.MAX_ITEMS,
                    items = {
                        type = "object", additionalProperties = false,
                        required = array({ "product_id", "sku", "quantity", "unit_price" }),
                        properties = {
                            product_id = ID,
                            sku = { type = "string", minLength = 1, maxLength = input.MAX_SKU_CHARS },
                            quantity = { type = "integer", minimum = 1, maximum = input.MAX_QUANTITY },
                            unit_price = { oneOf = array({ { type = "number", minimum = 0 }, MONEY }),
                                           description = "at most 2 decimals, >= 0" },
                        },
                    },
                },
            },
            examples = array({ { customer_id = 44, items = array({ { product_id = 105, sku = "SKU0095", quantity = 3,
                                                                     unit_price = "385.72" } }) } }),
        },
        StatusChange = {
            type = "object", additionalProperties = false, minProperties = 1,
            properties = { order_status = ref("OrderStatus"), payment_status = ref("PaymentStatus"),
                           shipping_status = ref("ShippingStatus") },
            examples = array({ { order_status = "SHIPPED" } }),
        },
        CancelRequest = {
            type = "object", additionalProperties = false,
            properties = { reason = { type = "string", minLength = 1, maxLength = input.MAX_REASON_CHARS } },
            examples = array({ {}, { reason = "ordered twice" } }),
        },
        CancelResult = {
            type = "object", required = array({ "status", "order" }),
            properties = { status = { type = "string", examples = array({ "Order cancelled successfully" }) },
                           order = ref("Order") },
        },
        SagaFailure = {
            type = "object", required = array({ "error", "order" }),
            properties = { error = { type = "string" }, order = ref("Order") },
            description = "the order was recorded, then refused by a downstream service (it is CANCELLED)",
        },
        Event = {
            type = "object", required = array({ "at", "type" }),
            description = "one entry of an order's timeline (status changes, saga steps, downstream deliveries)",
            properties = {
                at = { type = "string", format = "date-time" },
                type = { type = "string", enum = array({ "status_change", "saga_step", "delivery_queued", "delivered",
                                                         "delivery_voided", "delivery_refused" }) },
                field = { type = { "string", "null" }, description = "status_change: which status" },
                from = { type = { "string", "null" } }, to = { type = { "string", "null" } },
                actor = { type = { "string", "null" }, description = "who made the change (role:sub)" },
                reason = { type = { "string", "null" } },
                kind = { type = { "string", "null" }, description = "deliveries: reserve, charge, ship, notify, ..." },
                attempts = { type = { "integer", "null" } },
            },
        },
        Timeline = {
            type = "object", required = array({ "order_id", "events" }),
            properties = { order_id = { type = "integer" }, events = { type = "array", items = ref("Event") } },
        },
        Error = {
            type = "object", required = array({ "error" }),
            properties = {
                error = { type = "string" },
                details = { description = "what was wrong: often { field }; for 405 { allow }" },
                request_id = { type = "string", description = "on a 500: quote it when reporting" },
            },
            examples = array({ { error = "page_size must be an integer from 1 to 100",
                                 details = { field = "page_size" } } }),
        },
        Health = { type = "object", required = array({ "status" }),
                   properties = { status = { type = "string" }, error = { type = "string" } } },
    }
end

-- ---- parameters ----

local function query(name, schema, description, example)
    return { name = name, ["in"] = "query", required = false, description = description, schema = schema,
             example = example }
end

local function enum(list)
    return { type = "string", enum = list }
end

local PAGE_SIZE_NOTE = format("1 to %d", input.MAX_PAGE_SIZE)

local function list_parameters()
    return array({
        query("customer_id", { type = "integer", minimum = 1, maximum = input.MAX_ID }, "only this customer's orders", 44),
        query("product_id", { type = "integer", minimum = 1, maximum = input.MAX_ID }, "orders with an item of this product", 105),
        query("sku", { type = "string", minLength = 1, maxLength = input.MAX_SKU_CHARS }, "orders with an item of this SKU (exact)", "SKU0095"),
        query("order_status", enum(copy(rules.VALUES.order)), "order status", "CONFIRMED"),
        query("payment_status", enum(copy(rules.VALUES.payment)), "payment status", "PAID"),
        query("shipping_status", enum(copy(rules.VALUES.shipping)), "shipping status", "Delivered"),
        query("search", { type = "string", maxLength = input.MAX_SEARCH_CHARS },
              "all digits: the order id, customer id or an item's product id; otherwise an item's SKU contains the text (case-insensitive)", "SKU00"),
        query("created_from", { type = "string" }, "created at or after: a date (2024-09-18) or a timestamp (2024-09-18T14:40:32Z)", "2023-01-01"),
        query("created_to", { type = "string" }, "created at or before; a date includes its whole day", "2024-12-31"),
        query("sort", enum(array({ "created_at", "order_total", "order_id" })), "sort key (default created_at)", "order_total"),
        query("dir", enum(array({ "asc", "desc" })), "sort direction (default desc)", "asc"),
        query("page", { type = "integer", minimum = 1, maximum = input.MAX_PAGE, default = 1 }, "page number", 1),
        query("page_size", { type = "integer", minimum = 1, maximum = input.MAX_PAGE_SIZE, default = 20 }, PAGE_SIZE_NOTE, 20),
        query("needs_attention", enum(array({ "true", "false" })),
              "true: only orders flagged for a person (a refund the payment service never confirmed)", "true"),
    })
end

local function history_parameters()
    return array({
        query("search", { type = "string", maxLength = input.MAX_SEARCH_CHARS },
              "all digits: the order id or an item's product id; otherwise an item's SKU contains the text", "SKU00"),
        query("status_filter", enum(with_all(rules.VALUES.order)), "order status; All means no filter", "DELIVERED"),
        query("payment_filter", enum(with_all(rules.VALUES.payment)), "payment status; All means no filter", "PAID"),
        query("shipping_filter", enum(with_all(rules.VALUES.shipping)), "shipping status; All means no filter", "Delivered"),
        query("sort_by", enum(array({ "Date", "Total" })), "sort key (default Date)", "Total"),
        query("sort_dir", enum(array({ "Ascending", "Descending" })), "sort direction (default Descending)", "Ascending"),
        query("page", { type = "integer", minimum = 1, maximum = input.MAX_PAGE, default = 1 }, "page number", 1),
        query("page_size", { type = "integer", minimum = 1, maximum = input.MAX_PAGE_SIZE, default = 10 }, PAGE_SIZE_NOTE, 10),
    })
end

local IDEMPOTENCY_KEY = {
    name = "Idempotency-Key", ["in"] = "header", required = false,
    description = "retry safely: the same key and body answer the first answer again (Idempotent-Replayed: true) for 24 h",
    schema = { type = "string", minLength = 1, maxLength = input.MAX_KEY_BYTES }, example = "3f6c1c8e-order-44",
}

-- ---- responses ----

local function json(schema, description)
    return { description = description, content = { ["application/json"] = { schema = schema } } }
end
local function err(description)
    return json(ref("Error"), description)
end

-- handler -> operation: summary, description, tags, parameters (besides the path's),
-- request body, responses (the filters' and 500 are added per route).
local function operations()
    local order_list = json(ref("OrderList"), "a page of orders")
    return {
        ["health.check"] = { tags = { "health" }, summary = "Readiness: the database answers",
            responses = { ["200"] = json(ref("Health"), "ready"), ["503"] = json(ref("Health"), "the database does not answer") } },
        ["health.live"] = { tags = { "health" }, summary = "Liveness: the process serves requests",
            responses = { ["200"] = json(ref("Health"), "alive") } },
        ["metrics.scrape"] = { tags = { "health" }, summary = "Prometheus metrics (private networks only)",
            responses = { ["200"] = { description = "Prometheus text format",
                                      content = { ["text/plain"] = { schema = { type = "string" } } } } } },
        ["docs.index"] = { tags = { "docs" }, summary = "This reference (Swagger UI)",
            responses = { ["200"] = { description = "the page", content = { ["text/html"] = { schema = { type = "string" } } } } } },
        ["docs.openapi"] = { tags = { "docs" }, summary = "This OpenAPI document",
            responses = { ["200"] = json({ type = "object" }, "OpenAPI 3.1") } },
        ["orders.list"] = { tags = { "orders" }, summary = "List orders: filters, search, sort, pages",
            parameters = list_parameters(),
            responses = { ["200"] = order_list, ["400"] = err("a query argument is not valid (details.field names it)"),
                          ["503"] = err("the database is unavailable") } },
        ["orders.create"] = { tags = { "orders" }, summary = "Create an order (runs the reserve/charge saga before answering)",
            parameters = array({ IDEMPOTENCY_KEY }),
            requestBody = { required = true, content = { ["application/json"] = { schema = ref("NewOrder") } } },
            responses = {
                ["201"] = json(ref("Order"), "created, CONFIRMED and PAID"),
                ["400"] = err("the body is not valid (details.field names the field, items[0].quantity style)"),
                ["402"] = json(ref("SagaFailure"), "the payment was refused"),
                ["403"] = err("a customer's token creating an order for another customer"),
                ["409"] = json(ref("SagaFailure"), "the reservation was refused, or the Idempotency-Key is in progress"),
                ["415"] = err("the body is not declared Content-Type: application/json"),
                ["422"] = err("the Idempotency-Key was used with another body"),
                ["503"] = json(ref("SagaFailure"), "a downstream service or the database is unavailable"),
            } },
        ["orders.history"] = { tags = { "orders" }, summary = "A customer's order history (the My Orders page for browsers)",
            description = "With Accept: text/html (a browser) this URL answers the My Orders page, without a token; "
                .. "the page calls the same URL for JSON.",
            parameters = history_parameters(),
            responses = {
                ["200"] = { description = "a page of the customer's orders",
                            content = { ["application/json"] = { schema = ref("OrderList") },
                                        ["text/html"] = { schema = { type = "string" } } } },
                ["400"] = err("a query argument is not valid"),
                ["403"] = err("a customer's token asking for another customer's history"),
                ["503"] = err("the database is unavailable"),
            } },
        ["orders.details"] = { tags = { "orders" }, summary = "One order with its items",
            responses = { ["200"] = json(ref("Order"), "the order"), ["404"] = err("no such order"),
                          ["503"] = err("the database is unavailable") } },
        ["orders.update"] = { tags = { "orders" }, summary = "Change statuses (staff and services), per the status rules",
            requestBody = { required = true, content = { ["application/json"] = { schema = ref("StatusChange") } } },
            responses = { ["200"] = json(ref("Order"), "the order after the change (unchanged when nothing moved)"),
                          ["400"] = err("the body is not valid"), ["404"] = err("no such order"),
                          ["409"] = err("the rules refuse the change (details: field, from, to)"),
                          ["415"] = err("the body is not declared Content-Type: application/json"),
                          ["503"] = err("the database is unavailable") } },
        ["orders.cancel"] = { tags = { "orders" }, summary = "Cancel an order (releases stock, refunds a paid order)",
            parameters = array({ IDEMPOTENCY_KEY }),
            requestBody = { required = false, content = { ["application/json"] = { schema = ref("CancelRequest") } } },
            responses = { ["200"] = json(ref("CancelResult"), "cancelled"), ["400"] = err("the body is not valid"),
                          ["404"] = err("no such order"),
                          ["415"] = err("a body was sent without Content-Type: application/json"),
                          ["409"] = err("already CANCELLED, or SHIPPED/DELIVERED, or the Idempotency-Key is in progress"),
                          ["422"] = err("the Idempotency-Key was used with another body"),
                          ["503"] = err("the database is unavailable") } },
        -- The order timeline.
        ["orders.events"] = { tags = { "orders" }, summary = "The order's timeline: its status changes, oldest first",
            responses = { ["200"] = json(ref("Timeline"), "the events, oldest first"),
                          ["404"] = err("no such order") } },
    }
end

-- ---- assembly ----

local function operation_id(handler, used)
    local id = gsub(handler, "%.", "_")
    local n = 1
    while used[id] do
        n = n + 1
        id = gsub(handler, "%.", "_") .. "_" .. n
    end
    used[id] = true
    return id
end

local PATH_PARAM = "{([%w_]+):?[%w]*}"

local function path_parameters(path)
    local out = array()
    for name in path:gmatch(PATH_PARAM) do
        out[#out + 1] = { name = name, ["in"] = "path", required = true,
                          schema = { type = "integer", minimum = 1, maximum = input.MAX_ID },
                          example = name == "customer_id" and 55 or 1 }
    end
    return out
end

-- Adds what the route's filters answer themselves; returns whether auth applies.
local function filter_responses(chain, responses)
    local secured = false
    for _, f in ipairs(chain) do
        if f.name == "auth" then
            secured = true
            responses["401"] = responses["401"] or err("no token, or the token is not valid (WWW-Authenticate says why)")
            if f.conf.roles then
                responses["403"] = err("the token's role may not do this (allowed: " .. table.concat(f.conf.roles, ", ") .. ")")
            end
        elseif f.name == "ip_allow" then
            responses["403"] = err("the caller's address is not allowed")
        elseif f.name == "body_limit" then
            responses["413"] = err(format("the body is over %d bytes", f.conf.max_bytes))
        elseif f.name == "rate_limit" then
            responses["429"] = err("too many requests (Retry-After says when to retry)")
        elseif f.name == "maintenance" then
            responses["503"] = responses["503"] or err("down for maintenance (Retry-After)")
        end
    end
    return secured
end

local function shallow(t)
    local out = {}
    for k, v in pairs(t) do
        out[k] = v
    end
    return out
end

-- decl: what routes.lua returns. Returns the document as a Lua table.
function _M.build(decl, info)
    local ops, paths, used = operations(), {}, {}
    local tags = {}
    for _, route in ipairs(decl.routes) do
        local op = ops[route.handler]
        if op then
            local path = gsub(route.path, PATH_PARAM, "{%1}")
            local chain = assert(filters.chain(decl.filters, route.filters))
            local methods = type(route.method) == "table" and route.method or { route.method }
            for _, method in ipairs(methods) do
                local o = shallow(op)
                o.operationId = operation_id(route.handler, used)
                o.tags = copy(op.tags)
                for _, t in ipairs(op.tags) do
                    tags[t] = true
                end
                local params = path_parameters(route.path)
                for _, p in ipairs(op.parameters or {}) do
                    params[#params + 1] = p
                end
                o.parameters = #params > 0 and params or nil
                o.responses = shallow(op.responses)
                local secured = filter_responses(chain, o.responses)
                o.responses["500"] = err("an internal error (request_id to quote)")
                o.security = secured and array({ { bearerAuth = array() } }) or array()
                o["x-handler"] = route.handler
                paths[path] = paths[path] or {}
                paths[path][method:lower()] = o
            end
        end
    end
    local tag_list = array()
    for t in pairs(tags) do
        tag_list[#tag_list + 1] = { name = t }
    end
    sort(tag_list, function(a, b) return a.name < b.name end)
    return {
        openapi = "3.1.0",
        info = {
            title = "OrderService API",
            version = info and info.version or "1",
            description = "Orders: create, list, history, details, status changes and cancellation. "
                .. "Paths take an optional trailing slash. Errors are {\"error\", \"details\"}. "
                .. "The guide: docs/orders-api.md.",
        },
        servers = array({ { url = "/" } }),
        tags = tag_list,
        paths = paths,
        components = {
            schemas = schemas(),
            securitySchemes = { bearerAuth = { type = "http", scheme = "bearer", bearerFormat = "JWT",
                                               description = "a JWT from your identity provider (or `orderservice token` in development)" } },
        },
    }
end

-- The handlers this module describes (for the drift test).
function _M.described()
    local out = {}
    for name in pairs(operations()) do
        out[#out + 1] = name
    end
    sort(out)
    return out
end

return _M
