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
        request_id = { trust_incoming = true },
    },

    routes = {
        { method = "GET", path = "/health/", handler = "health.check" },
        { method = "GET", path = "/health/live/", handler = "health.live" },
        { method = "GET", path = "/metrics", handler = "metrics.scrape" },
    },
}
