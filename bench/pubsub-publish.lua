-- pubsub-publish.lua: the wrk script of bench/pubsub-bench.sh.
--
-- Every request POSTs one message to the URL given to wrk (daprd's
-- /v1.0/publish/<pubsub>/<topic>) with the JSON body
--     {"pb_seq":<id>,"pb_sent_ns":<CLOCK_MONOTONIC ns right before sending>}
-- which the subscriber (pubsub-app.c, pubsub-stats.h) uses to tell
-- distinct messages from duplicates and to time publish -> delivery.
--
-- Set through the environment (read when wrk loads the script):
--   PB_BASE     first id of this run (ids are PB_BASE + n * PB_THREADS + t)
--   PB_THREADS  the -t given to wrk, so that thread ids interleave densely
--   PB_RATE     if set and > 0: pace the whole run at this many messages
--               per second (each send gets the next slot of a fixed
--               schedule, as wrk2 does), instead of as fast as the
--               connections allow
-- At the end it prints one line, "PB sent=N ok=N failed=N", counting the
-- requests written, the 2xx answers and the others; requests still
-- unanswered when wrk stopped are sent - ok - failed.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pb_timespec;
int clock_gettime(int clk_id, pb_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("pb_timespec")

local function now_ns()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local base = tonumber(os.getenv("PB_BASE") or "0")
local nthreads = tonumber(os.getenv("PB_THREADS") or "1")
local rate = tonumber(os.getenv("PB_RATE") or "0")
local headers = { ["Content-Type"] = "application/json" }

-- Main state: number the threads, keep them for done().
local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads - 1)
end

-- Thread state.
seq, sent, ok, failed = 0, 0, 0, 0

function request()
    local id = base + seq * nthreads + tid
    seq = seq + 1
    sent = sent + 1
    local body = string.format('{"pb_seq":%.0f,"pb_sent_ns":%.0f}', id, now_ns())
    return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
    if status >= 200 and status < 300 then
        ok = ok + 1
    else
        failed = failed + 1
    end
end

if rate > 0 then
    -- This thread's share of the schedule: one slot every interval ms.
    -- A slot missed (every connection busy) is not made up later in a
    -- burst: the schedule restarts from now.
    local interval = 1000 * nthreads / rate
    local next_slot = nil
    function delay()
        local now = now_ns() / 1e6
        if next_slot == nil then
            next_slot = now
        else
            next_slot = math.max(next_slot + interval, now)
        end
        local d = next_slot - now
        return d > 0 and math.floor(d + 0.5) or 0
    end
end

function done(summary, latency, requests)
    local s, o, f = 0, 0, 0
    for _, t in ipairs(threads) do
        s = s + t:get("sent")
        o = o + t:get("ok")
        f = f + t:get("failed")
    end
    io.write(string.format("PB sent=%d ok=%d failed=%d\n", s, o, f))
end
