-- wrk script: every request saves the same key into the "statestore"
-- component, so the store does not grow during the run and each save is
-- an overwrite (last-write, no etag).  The URL on the command line gives
-- the path: /v1.0/state/statestore.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"key":"k1","value":{"n":1}}]'
