# The out-of-tree example plugin: shipped in the tarball, not built by the
# main build (it builds against an installed SDK; t/sdk-example.sh does).
EXTRA_DIST += \
	plugin-sdk/examples/state-example/Makefile \
	plugin-sdk/examples/state-example/state-example.c
