# Compatibility test: the Dapr JavaScript SDK (@dapr/dapr, HTTP mode) drives
# the built daprd: the state API, service invocation across two sidecars,
# and publish/subscribe with the SDK's DaprServer as the subscriber app.
# run.sh installs the pinned SDK with `npm ci` into t/sdk-js-cache/ of the
# build tree and runs `node --test`.
TESTS += t/sdk-js/run.sh
EXTRA_DIST += t/sdk-js/run.sh \
	t/sdk-js/state.test.mjs \
	t/sdk-js/invoke.test.mjs \
	t/sdk-js/pubsub.test.mjs \
	t/sdk-js/secrets.test.mjs \
	t/sdk-js/bindings.test.mjs \
	t/sdk-js/package.json \
	t/sdk-js/package-lock.json

# The npm install is a folder: CLEANFILES cannot remove it.
clean-sdk-js:
	rm -rf t/sdk-js-cache
CLEAN_LOCAL_HOOKS += clean-sdk-js
.PHONY: clean-sdk-js
