# dapr: the command line tool (dapr run/list/stop/init/...), installed next
# to daprd.  It links the core convenience library only for util.c's helpers.
bin_PROGRAMS += core/dapr
core_dapr_SOURCES = \
	core/dapr.c \
	core/cli.h \
	core/cli_cmds.c \
	core/cli_registry.c \
	core/cli_run.c \
	core/cli_runfile.c \
	core/cli_util.c
core_dapr_CPPFLAGS = -I$(top_srcdir)/plugin-sdk/include -DPLUGINDIR='"$(plugindir)"'
core_dapr_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(YAML_CFLAGS)
core_dapr_LDADD = core/libdaprcore.la $(JANSSON_LIBS) $(YAML_LIBS)
