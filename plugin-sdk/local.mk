# The public plugin SDK: headers under $(includedir)/dapr/ and a .pc file.
daprincludedir = $(includedir)/dapr
daprinclude_HEADERS = \
	plugin-sdk/include/dapr/common.h \
	plugin-sdk/include/dapr/plugin.h \
	plugin-sdk/include/dapr/state.h \
	plugin-sdk/include/dapr/pubsub.h \
	plugin-sdk/include/dapr/bindings.h \
	plugin-sdk/include/dapr/secretstore.h \
	plugin-sdk/include/dapr/nameresolution.h

pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = plugin-sdk/dapr-plugin-sdk.pc
EXTRA_DIST += plugin-sdk/dapr-plugin-sdk.pc.in plugin-sdk/README.md

include plugin-sdk/conformance/local.mk
include plugin-sdk/examples/local.mk

# ABI guard: the public headers against the recorded baseline (abidiff).
TESTS += plugin-sdk/abi/check-abi.sh
EXTRA_DIST += plugin-sdk/abi/check-abi.sh plugin-sdk/abi/abi_anchor.c plugin-sdk/abi/dapr-plugin-abi.xml
