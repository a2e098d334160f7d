# Purpose-built test plugins for t/system/test-loader.sh.  They are
# check_LTLIBRARIES: built by `make check` only and never installed, hence
# `-rpath /nowhere` (libtool makes a shared module only when given an rpath).
# Each lands in t/plugins/.libs/<name>.so.
#
#   sleepy.so         state.sleepy, blocking get (2 s): the loop must not stall
#   bad-abi-major.so  ABI major + 1: refused
#   bad-abi-minor.so  ABI minor + 1: refused
#   no-entry.so       no dapr_plugin_entry symbol: refused
#   dup-type.so       state.in-memory again: refused, the real one stays
#   failing-init.so   state.failinit, init always fails
#   flaky.so          state.flaky, fails / stalls by key (t/resiliency)
TEST_PLUGIN_LDFLAGS = $(PLUGIN_LINK_FLAGS) -rpath /nowhere

check_LTLIBRARIES += t/plugins/sleepy.la t/plugins/bad-abi-major.la \
	t/plugins/bad-abi-minor.la t/plugins/no-entry.la t/plugins/dup-type.la \
	t/plugins/failing-init.la t/plugins/flaky.la

t_plugins_sleepy_la_SOURCES = t/plugins/sleepy.c
t_plugins_sleepy_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_sleepy_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)

t_plugins_bad_abi_major_la_SOURCES = t/plugins/bad_abi_major.c t/plugins/stub_state.h
t_plugins_bad_abi_major_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_bad_abi_major_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)

t_plugins_bad_abi_minor_la_SOURCES = t/plugins/bad_abi_minor.c t/plugins/stub_state.h
t_plugins_bad_abi_minor_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_bad_abi_minor_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)

t_plugins_no_entry_la_SOURCES = t/plugins/no_entry.c
t_plugins_no_entry_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_no_entry_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)

t_plugins_dup_type_la_SOURCES = t/plugins/dup_type.c t/plugins/stub_state.h
t_plugins_dup_type_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_dup_type_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)

t_plugins_failing_init_la_SOURCES = t/plugins/failing_init.c
t_plugins_failing_init_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_failing_init_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)

t_plugins_flaky_la_SOURCES = t/plugins/flaky.c
t_plugins_flaky_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS)
t_plugins_flaky_la_LDFLAGS = $(TEST_PLUGIN_LDFLAGS)
t_plugins_flaky_la_LIBADD = $(PTHREAD_LIBS)
