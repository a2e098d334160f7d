# Compatibility test: the Dapr JavaScript SDK (@dapr/dapr, HTTP mode) drives
# the built daprd: the state API, and service invocation across two sidecars.
# run.sh installs the pinned SDK with `npm ci` into t/sdk-js-cache/ of the
# build tree and runs `node --test`.
TESTS += t/sdk-js/run.sh
EXTRA_DIST += t/sdk-js/run.sh \
	t/sdk-js/state.test.mjs \
	t/sdk-js/invoke.test.mjs \
	t/sdk-js/package.json \
	t/sdk-js/package-lock.json

# The npm install is a folder: CLEANFILES cannot remove it.
clean-sdk-js:
	rm -rf t/sdk-js-cache
CLEAN_LOCAL_HOOKS += clean-sdk-js
.PHONY: clean-sdk-js
