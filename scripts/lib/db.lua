-- db.lua - PostgreSQL from Lua: prepared statements, rows, transactions.
--
--   local Q = db.statement("orders_by_id", "SELECT ... WHERE order_id = $1")
--   local rows, err = db.query(Q, id)         -- rows: list of { column = value }
--   local rows, err = db.read(Q, id)          -- the same, on the read replica when it may serve
--   local ok, err = db.transaction(function() ... return true end)
--
-- Values come back typed by column: integers as numbers, booleans as booleans, numeric
-- (money) as exact strings, timestamptz as ISO-8601 with offset, SQL NULL as db.null.
-- Parameters are sent as text: pass money as strings, never as Lua numbers with cents.
-- A failure returns nil, err where err = { kind = "unavailable" | "timeout" | "query",
-- message = ..., sqlstate = ... }; db.unavailable(err) tells whether to answer 503. A lost
-- connection and the SQLSTATEs of a server going away (57P01-57P03, class 08) are "unavailable".

local ffi = require("ffi")
local cjson = require("cjson")
local C = require("lib.core")
local async = require("lib.async")

local tonumber, tostring, type, select = tonumber, tostring, type, select
local format, sub, find = string.format, string.sub, string.find

local OK, ERR, EUNAVAILABLE, ETIMEDOUT = C.OS_OK, C.OS_ERR, C.OS_EUNAVAILABLE, C.OS_ETIMEDOUT

local _M = { null = cjson.null }

local len_out = ffi.new("size_t[1]")
-- The parameters' array type, parsed once: ffi.new with the declaration's text parses it at
-- every call the JIT has not compiled (a query's wait ends every trace).
local params_array = ffi.typeof("const char *[?]")

local INT_TYPES = { [20] = true, [21] = true, [23] = true, [26] = true }
local BOOL, TIMESTAMPTZ = 16, 1184

local error_mt = { __tostring = function(e) return e.message end }

-- SQLSTATEs that say the server is going away or the connection is gone, not that the
-- query was wrong: 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
-- and class 08 (connection exception).
local function unavailable_sqlstate(state)
    return state == "57P01" or state == "57P02" or state == "57P03" or sub(state, 1, 2) == "08"
end

local function failure(task, rc)
    local kind = rc == EUNAVAILABLE and "unavailable" or rc == ETIMEDOUT and "timeout" or "query"
    local err = { kind = kind, message = async.error_message(task) }
    if rc == ERR then
        err.sqlstate = ffi.string(C.os_db_sqlstate(task))
        if unavailable_sqlstate(err.sqlstate) then
            err.kind = "unavailable"
        end
    end
    C.os_db_clear(task)
    return nil, setmetatable(err, error_mt)
end

-- "2024-09-18 14:40:32.5+00" -> "2024-09-18T14:40:32.5+00:00"
local function iso8601(s)
    s = s:gsub(" ", "T", 1)
    if find(s, "[+-]%d%d$") then
        return s .. ":00"
    end
    return s
end

local function convert(value, oid)
    if INT_TYPES[oid] then
        return tonumber(value)
    elseif oid == BOOL then
        return value == "t"
    elseif oid == TIMESTAMPTZ then
        return iso8601(value)
    end
    return value
end

local function read_rows(task)
    local nrows, ncols = C.os_db_nrows(task), C.os_db_ncols(task)
    local names, types = {}, {}
    for c = 0, ncols - 1 do
        names[c] = ffi.string(C.os_db_colname(task, c))
        types[c] = C.os_db_coltype(task, c)
    end
    local rows = { affected = tonumber(C.os_db_affected(task)) }
    for r = 0, nrows - 1 do
        local row = {}
        for c = 0, ncols - 1 do
            local p = C.os_db_value(task, r, c, len_out)
            row[names[c]] = p == nil and _M.null or convert(ffi.string(p, len_out[0]), types[c])
        end
        rows[r + 1] = row
    end
    C.os_db_clear(task)
    return rows
end

local function param_text(v)
    if v == nil or v == _M.null then
        return nil
    elseif type(v) == "number" then
        if v % 1 == 0 and v >= -2^53 and v <= 2^53 then
            return format("%d", v)
        end
        error("bad parameter: only integers may be passed as numbers (money travels as strings)", 4)
    elseif type(v) == "boolean" then
        return v and "true" or "false"
    end
    return tostring(v)
end

-- A hash (FNV-1a style) of the SQL text, so that a reload which changes a statement's SQL prepares it
-- under a new server-side name instead of running the old text prepared on a connection.
local function sql_hash(sql)
    local h = 2166136261
    for i = 1, #sql do
        h = bit.tobit(bit.bxor(h, sql:byte(i)) * 16777619)
    end
    return bit.tohex(h)
end

-- The statements made so far, by name and SQL text: SQL built per request (a list's filters)
-- hashes each text once per VM. Bounded: past STATEMENTS_MAX texts it starts afresh.
local STATEMENTS_MAX = 256
local statements, nstatements = {}, 0

-- A statement is prepared once per connection (core/db.c keeps the 64 used last): parsed once
-- there, and planned once when PostgreSQL finds its generic plan no costlier than the plans for
-- the values it has seen (plan_cache_mode = auto: after five executions). SQL built per request
-- from the filters present (orders.sql.list) is a statement too: each distinct text is one, and
-- statement() returns the same one for the same text.
function _M.statement(name, sql)
    local by_sql = statements[name]
    local stmt = by_sql and by_sql[sql]
    if stmt then
        return stmt
    end
    if type(name) ~= "string" or not find(name, "^[%w_]+$") then
        error("bad 'name' argument", 2)
    elseif type(sql) ~= "string" then
        error("bad 'sql' argument", 2)
    end
    if nstatements >= STATEMENTS_MAX then
        statements, nstatements = {}, 0
    end
    by_sql = statements[name] or {}
    statements[name] = by_sql
    stmt = { name = name .. "_" .. sql_hash(sql), sql = sql }
    by_sql[sql] = stmt
    nstatements = nstatements + 1
    return stmt
end

-- Sends stmt with its parameters through start (C.os_db_query or C.os_db_read) and waits.
local function run(start, stmt, ...)
    local name, sql
    if type(stmt) == "table" then
        name, sql = stmt.name, stmt.sql
    elseif type(stmt) == "string" then
        name, sql = "", stmt
    else
        error("bad 'stmt' argument", 3)
    end
    local n = select("#", ...)
    local params = params_array(n + 1)
    local keep = {} -- holds the strings the pointers refer to until the call returns
    for i = 1, n do
        local text = param_text((select(i, ...)))
        keep[i] = text
        params[i - 1] = text
    end
    local task = async.task()
    local rc = async.wait(start(task, name, sql, n, params))
    keep = nil
    if rc ~= OK then
        return failure(task, rc)
    end
    return read_rows(task)
end

-- Runs a statement (from db.statement) or a plain SQL string with $n parameters on the primary.
function _M.query(stmt, ...)
    return run(C.os_db_query, stmt, ...)
end

-- Like db.query, for a read that may be served by the read replica (DATABASE_READ_URL) while
-- it is up and no further behind than READ_MAX_LAG_MS; else, and inside a transaction, by the
-- primary. What a request wrote itself is read with db.query: the replica may not have it yet.
-- A replica that fails mid-read (it went down since its last lag probe) costs one retry on the
-- primary, not a 503. Outside a transaction a db.statement read shares a connection with other
-- reads (libpq's pipeline mode, DB_PIPELINE_DEPTH at a time), so it must only read: a write
-- could wait for a row lock and hold up every statement behind it.
function _M.read(stmt, ...)
    local rows, err = run(C.os_db_read, stmt, ...)
    if not rows and _M.unavailable(err) and C.os_db_on_replica(async.task()) ~= 0 then
        return run(C.os_db_query, stmt, ...)
    end
    return rows, err
end

-- Runs fn() inside BEGIN ... COMMIT on one connection. fn returns a non-nil value to
-- commit (transaction returns what fn returned), or nil, err to roll back (transaction
-- returns nil, err); if fn raises, the transaction is rolled back and the error re-raised.
function _M.transaction(fn)
    local task = async.task()
    local rc = async.wait(C.os_db_pin(task))
    if rc ~= OK then
        return failure(task, rc)
    end
    local _, err = _M.query("BEGIN")
    if err then
        C.os_db_unpin(task)
        return nil, err
    end
    local ok, result, fn_err = pcall(fn)
    if ok and result ~= nil then
        _, err = _M.query("COMMIT")
        C.os_db_unpin(task)
        if err then
            return nil, err
        end
        return result, fn_err
    end
    -- pcall: when the client went away the ROLLBACK itself raises (async.CANCELLED); the
    -- connection, released inside its transaction, is then closed, which rolls it back.
    pcall(_M.query, "ROLLBACK")
    C.os_db_unpin(task)
    if not ok then
        error(result, 0)
    end
    return nil, fn_err
end

-- Whether err (a db failure, or what a transaction raised) means "the database cannot be
-- reached": answer 503 and let the client retry.
function _M.unavailable(err)
    return type(err) == "table" and (err.kind == "unavailable" or err.kind == "timeout")
end

return _M
