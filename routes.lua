-- routes.lua - every endpoint of OrderService and the filters in front of them.
--
-- Operators edit this file; the service reloads it with the scripts. Each route is
--   { method = "GET" | {"GET", "POST"}, path = "/v1/orders/{id}/", handler = "module.function",
--     filters = { name = conf | true | false } }
-- A path matches with or without its trailing slash. {id} and {*_id} parameters must
-- be positive integers. handler "orders.details" is scripts/handlers/orders.lua's
-- function details. `filters` at the top apply to every route; a route's own filters
-- add to them or, with false, switch one off. Filters live in scripts/filters/.

return {
    filters = {
        access_log = { slow_ms = 1000 },
        request_id = { trust_incoming = true },
    },

    -- Background work, run on worker 0 of every replica (JOBS=0 turns it off there).
    jobs = {
        outbox = { handler = "jobs.deliver_outbox", every_ms = tonumber(os.getenv("OUTBOX_EVERY_MS")) or 250 },
        saga_recovery = { handler = "jobs.recover_sagas",
                          every_ms = tonumber(os.getenv("SAGA_RECOVERY_EVERY_MS")) or 5000 },
    },

    routes = {
        { method = "GET", path = "/health/", handler = "health.check" },
        { method = "GET", path = "/health/live/", handler = "health.live" },
        { method = "GET", path = "/metrics", handler = "metrics.scrape" },

        -- Orders REST API (issue 4). Literal segments win over {id}, so create/ and
        -- my-orders/ never reach the {id} routes.
        { method = "GET", path = "/v1/orders/", handler = "orders.list" },
        { method = "POST", path = "/v1/orders/", handler = "orders.create" },
        { method = "POST", path = "/v1/orders/create/", handler = "orders.create" },
        { method = "GET", path = "/v1/orders/my-orders/{customer_id}/", handler = "orders.history" },
        { method = "GET", path = "/v1/orders/{id}/", handler = "orders.details" },
        { method = "GET", path = "/v1/orders/{id}/details/", handler = "orders.details" },
        { method = "GET", path = "/v1/orders/{id}/events/", handler = "orders.events" },
        { method = "PATCH", path = "/v1/orders/{id}/update/", handler = "orders.update" },
        { method = "POST", path = "/v1/orders/{id}/cancel/", handler = "orders.cancel" },
    },
}
