-- Stand-ins for the downstream services, served by the same binary with
--   ROUTES_FILE=scripts/standins/routes.lua WORKERS=1 JOBS=0 orderservice
-- `make run` starts them when no downstream URL is set; the saga tests and benchmarks use
-- them too. Their behaviour (latency, failure rate, a fixed answer per step) is set with
-- STANDIN_LATENCY_MS / STANDIN_FAILURE_RATE or at run time with PUT /_behaviour; the newest
-- STANDIN_CALL_LOG calls can be read back at GET /_calls, and each order's ledger (stock
-- reserved, money charged and refunded, shipments) at GET /_ledger. See handlers/standin.lua.
return {
    routes = {
        { method = "POST", path = "/inventory/reserve/", handler = "standin.reserve" },
        { method = "POST", path = "/inventory/release/", handler = "standin.release" },
        { method = "POST", path = "/payment/charge/", handler = "standin.charge" },
        { method = "POST", path = "/payment/{order_id}/refund/", handler = "standin.refund" },
        { method = "POST", path = "/shipping/create/", handler = "standin.ship" },
        { method = "POST", path = "/shipping/{order_id}/cancel/", handler = "standin.ship_cancel" },
        { method = "POST", path = "/notification/", handler = "standin.notify" },
        { method = "GET", path = "/_calls", handler = "standin.calls" },
        { method = "DELETE", path = "/_calls", handler = "standin.reset" },
        { method = "PUT", path = "/_behaviour", handler = "standin.set_behaviour" },
        { method = "GET", path = "/_ledger", handler = "standin.ledger" },
        { method = "GET", path = "/health/", handler = "health.live" },
    },
}
