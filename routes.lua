-- routes.lua - every endpoint of OrderService and the filters in front of them.
--
-- Operators edit this file; the service reloads it with the scripts, and
-- `orderservice check` validates it (file:line messages) without starting anything. Each route is
--   { method = "GET" | {"GET", "POST"}, path = "/v1/orders/{id}/", handler = "module.function",
--     filters = { name = options | true | false } }
-- A path matches with or without its trailing slash. {id} and {*_id} parameters must
-- be positive integers. handler "orders.details" is scripts/handlers/orders.lua's
-- function details.
--
-- Filters live in scripts/filters/ (their options: the `schema` at the top of each file).
-- `filters` at the top apply to every route and to unmatched requests; a route's own entry
-- is merged over the global options key by key, `true` takes them as they are, `false`
-- switches the filter off for that route. Any filter's options take `priority = N` to move
-- it in the chain for the routes they apply to (higher runs first). docs/operators.md.

local config = require("lib.config")

return {
    filters = {
        access_log = { slow_ms = 1000 },
        request_id = { trust_incoming = true },
        headers = { add = { ["x-content-type-options"] = "nosniff", ["x-frame-options"] = "DENY",
                            ["referrer-policy"] = "no-referrer" } },
        -- Every route needs a bearer token unless it says auth = false. The API docs are
        -- served without one (their routes below say so; the prefix gives a mistyped docs URL
        -- its 404, not a 401).
        auth = { exempt_prefixes = { "/orders-doc/" } },
    },

    -- Background work on every replica (JOBS=0 turns it off there): on worker 0, or on every
    -- worker with workers = "all". The outbox's rows are leased (FOR UPDATE SKIP LOCKED), so
    -- every worker delivers a share; saga recovery is rare work that would only race itself.
    jobs = {
        outbox = { handler = "jobs.deliver_outbox", every_ms = config.OUTBOX_EVERY_MS, workers = "all" },
        saga_recovery = { handler = "jobs.recover_sagas", every_ms = config.SAGA_RECOVERY_EVERY_MS },
    },

    routes = {
        { method = "GET", path = "/health/", handler = "health.check", filters = { auth = false } },
        { method = "GET", path = "/health/live/", handler = "health.live", filters = { auth = false } },
        -- Scraped without a token, from the cluster's private networks only.
        { method = "GET", path = "/metrics", handler = "metrics.scrape",
          filters = { auth = false, ip_allow = { allow = { "127.0.0.0/8", "::1", "10.0.0.0/8", "172.16.0.0/12",
                                                           "192.168.0.0/16" } } } },

        -- Orders REST API (issue 4). Literal segments win over {id}, so create/ and
        -- my-orders/ never reach the {id} routes.
        { method = "GET", path = "/v1/orders/", handler = "orders.list" },
        { method = "POST", path = "/v1/orders/", handler = "orders.create",
          filters = { body_limit = { max_bytes = 65536 } } },
        { method = "POST", path = "/v1/orders/create/", handler = "orders.create",
          filters = { body_limit = { max_bytes = 65536 } } },
        { method = "GET", path = "/v1/orders/my-orders/{customer_id}/", handler = "orders.history",
          filters = { html_page = { page = "my_orders" } } }, -- browsers get the My Orders page
        { method = "GET", path = "/v1/orders/{id}/", handler = "orders.details" },
        { method = "GET", path = "/v1/orders/{id}/details/", handler = "orders.details" },
        { method = "GET", path = "/v1/orders/{id}/events/", handler = "orders.events" },
        -- Status changes are for staff and the services that drive orders, not customers.
        { method = "PATCH", path = "/v1/orders/{id}/update/", handler = "orders.update",
          filters = { auth = { roles = { "admin", "service" } } } },
        { method = "POST", path = "/v1/orders/{id}/cancel/", handler = "orders.cancel" },

        -- The API reference (issue 11), no token: Swagger UI over the OpenAPI document built from
        -- this file (docs/openapi.lua). Swagger UI's files and the My Orders page's script and
        -- styles are static files h2o serves itself at /orders-doc/ui/ and /static/ (core/static.c).
        { method = "GET", path = "/orders-doc/", handler = "docs.index", filters = { auth = false } },
        { method = "GET", path = "/orders-doc/openapi.json", handler = "docs.openapi", filters = { auth = false } },
    },
}
