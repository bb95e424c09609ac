-- sql_texts.lua - writes the pgbench scripts of `make bench` from the service's own code, so
-- the limit beside each case runs exactly the SQL the service sends (nothing retyped):
--
--   OS_CORE_LIB=build/liboscore.so luajit bench/sql_texts.lua OUTDIR DETAILS_ID NAME=PATH?QUERY ...
--
-- For each NAME=PATH?QUERY a list or history case: the query string goes through
-- orders.input.list_args / history_args (as the handler reads it) and orders.sql.list, and
-- OUTDIR/NAME.sql is that text with $n replaced by pgbench variables :p<n>, whose values go to
-- OUTDIR/NAME.vars as `-D p<n>=value` arguments (pgbench -M prepared prepares the script's
-- statements once per connection and sends these as parameters, as the service does: every
-- list text is a db.statement). OUTDIR/details.sql is orders.sql.DETAILS for DETAILS_ID.
-- OUTDIR/NAME.explain.sql is the same statement PREPAREd, run six times and then once under
-- EXPLAIN (ANALYZE, BUFFERS) with its values: the plan PostgreSQL settles on (plan_cache_mode
-- = auto: five plans for the values, then at the sixth a generic one if it costs no more,
-- planned then; the seventh shows what a statement costs from there on).
--
-- A text search (`?search=SKU...`) is two statements in the service: orders.sql.SKU_LOOKUP
-- against order_skus, whose answer decides the list's filter (orders.sql.sku_search). Here the
-- lookup runs once against $DATABASE_URL (the bench's database, as the service would run it),
-- and NAME.sql holds both statements, the lookup (variable :q1) and then the list with the
-- filter that answer gave, so the limit pays for the lookup too. When no SKU
-- matches, the service sends no list query, and NAME.sql is the lookup alone.
package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local input = require("orders.input")
local order_sql = require("orders.sql")
local request = require("lib.request")

local outdir, details_id = arg[1], arg[2]
assert(outdir and details_id, "usage: sql_texts.lua OUTDIR DETAILS_ID NAME=PATH?QUERY ...")

local function literal(v)
    return "'" .. tostring(v):gsub("'", "''") .. "'"
end

-- SKU_LOOKUP's row for pattern, from the bench's database.
local function lookup(pattern)
    local url = assert(os.getenv("DATABASE_URL"), "a text search needs DATABASE_URL (the lookup)")
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write("PREPARE l(text) AS ", order_sql.SKU_LOOKUP, ";\nEXECUTE l(", literal(pattern), ");\n")
    f:close()
    local p = assert(io.popen("psql -X -q -At -z -v ON_ERROR_STOP=1 -f " .. file .. " '" .. url .. "'"))
    local out = p:read("*a")
    local ok = p:close()
    os.remove(file)
    local matched, broad, skus, sku = out:match("^(%d+)%z([tf])%z([^%z]*)%z([^\n]*)\n$")
    assert(ok and matched, "the SKU lookup failed: " .. out)
    return { matched = tonumber(matched), broad = broad == "t", skus = skus ~= "" and skus or nil,
             sku = sku ~= "" and sku or nil }
end

-- Appends statement sql, its $n written as :<prefix>n, to the script; its values to vars.
local function add(name, script, vars, prefix, sql, params)
    -- pgbench ends a statement at a ';' (a newline inside one is fine)
    assert(not sql:find(";", 1, true), name .. ": the SQL holds a ';'")
    script[#script + 1] = sql:gsub("%$(%d+)", ":" .. prefix .. "%1") .. ";\n"
    for i, v in ipairs(params) do
        local s = tostring(v)
        assert(not s:find("[%s'\"]"), name .. ": a parameter with a space or a quote")
        vars[#vars + 1] = "-D" .. prefix .. i .. "=" .. s
    end
end

-- sql, params: the list query, or nil when the service sends none; pattern: a text search's.
local function write(name, sql, params, pattern)
    local script, vars = {}, {}
    if pattern then
        add(name, script, vars, "q", order_sql.SKU_LOOKUP, { pattern })
    end
    if sql then
        add(name, script, vars, "p", sql, params)
    end
    local f = assert(io.open(outdir .. "/" .. name .. ".sql", "w"))
    f:write(table.concat(script))
    f:close()
    f = assert(io.open(outdir .. "/" .. name .. ".vars", "w"))
    f:write(table.concat(vars, " "), "\n")
    f:close()
    f = assert(io.open(outdir .. "/" .. name .. ".explain.sql", "w"))
    if sql then
        local literals = {}
        for i, v in ipairs(params) do
            literals[i] = literal(v)
        end
        local execute = "EXECUTE q(" .. table.concat(literals, ", ") .. ");\n"
        f:write("PREPARE q AS ", sql, ";\n\\o /dev/null\n", execute:rep(6), "\\o\n",
                "EXPLAIN (ANALYZE, BUFFERS) ", execute, "DEALLOCATE q;\n")
    else
        f:write("EXPLAIN (ANALYZE, BUFFERS) ", order_sql.SKU_LOOKUP:gsub("%$1", function() return literal(pattern) end),
                ";\n")
    end
    f:close()
end

write("details", order_sql.DETAILS, { details_id })

for i = 3, #arg do
    local name, path, qs = arg[i]:match("^([%w_]+)=([^?]+)%??(.*)$")
    assert(name, "bad case: " .. arg[i])
    local req = request.new({ method = "GET", path = path, query_string = qs })
    local args, err
    local customer = path:match("/my%-orders/(%d+)/")
    if customer then
        args, err = input.history_args(req, tonumber(customer))
    else
        args, err = input.list_args(req)
    end
    assert(args, name .. ": " .. tostring(err and err.message))
    local search = args.search
    if search and search.pattern and not order_sql.sku_search(search, lookup(search.pattern)) then
        write(name, nil, nil, search.pattern)
    else
        local sql, params = order_sql.list(args)
        write(name, sql, params, search and search.pattern)
    end
end
