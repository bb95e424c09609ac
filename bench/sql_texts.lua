-- sql_texts.lua - writes the pgbench scripts of `make bench` from the service's own code, so
-- the limit beside each case runs exactly the SQL the service sends (nothing retyped):
--
--   OS_CORE_LIB=build/liboscore.so luajit bench/sql_texts.lua OUTDIR DETAILS_ID NAME=PATH?QUERY ...
--
-- For each NAME=PATH?QUERY a list or history case: the query string goes through
-- orders.input.list_args / history_args (as the handler reads it) and orders.sql.list, and
-- OUTDIR/NAME.sql is that text with $n replaced by pgbench variables :p<n>, whose values go to
-- OUTDIR/NAME.vars as `-D p<n>=value` arguments (pgbench -M extended sends them as parameters,
-- as libpq does for the service's unnamed statements). OUTDIR/details.sql is orders.sql.DETAILS
-- for DETAILS_ID. OUTDIR/NAME.explain.sql is the same statement PREPAREd and run once under
-- EXPLAIN (ANALYZE, BUFFERS) with its values (the first executions of a prepared statement
-- are planned with the actual values, as the service's unnamed statements are).
package.path = "scripts/?.lua;scripts/?/init.lua;" .. package.path

local input = require("orders.input")
local order_sql = require("orders.sql")
local request = require("lib.request")

local outdir, details_id = arg[1], arg[2]
assert(outdir and details_id, "usage: sql_texts.lua OUTDIR DETAILS_ID NAME=PATH?QUERY ...")

local function write(name, sql, params)
    -- pgbench reads one statement per script; a newline inside it is fine, a ';' would end it
    assert(not sql:find(";", 1, true), name .. ": the SQL holds a ';'")
    local text = sql:gsub("%$(%d+)", ":p%1")
    local f = assert(io.open(outdir .. "/" .. name .. ".sql", "w"))
    f:write(text, ";\n")
    f:close()
    local vars = {}
    for i, v in ipairs(params) do
        local s = tostring(v)
        assert(not s:find("[%s'\"]"), name .. ": a parameter with a space or a quote")
        vars[#vars + 1] = "-Dp" .. i .. "=" .. s
    end
    f = assert(io.open(outdir .. "/" .. name .. ".vars", "w"))
    f:write(table.concat(vars, " "), "\n")
    f:close()
    local literals = {}
    for i, v in ipairs(params) do
        literals[i] = "'" .. tostring(v):gsub("'", "''") .. "'"
    end
    f = assert(io.open(outdir .. "/" .. name .. ".explain.sql", "w"))
    f:write("PREPARE q AS ", sql, ";\nEXPLAIN (ANALYZE, BUFFERS) EXECUTE q(",
            table.concat(literals, ", "), ");\nDEALLOCATE q;\n")
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
    write(name, order_sql.list(args))
end
