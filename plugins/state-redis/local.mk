# state.redis: Dapr state on a Redis server through hiredis, in the data
# layout of Dapr's own state.redis.  Built only when configure found
# hiredis (BUILD_STATE_REDIS).
if BUILD_STATE_REDIS
plugin_LTLIBRARIES += plugins/state-redis/state-redis.la
plugins_state_redis_state_redis_la_SOURCES = plugins/state-redis/state_redis.c
plugins_state_redis_state_redis_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(HIREDIS_CFLAGS) $(PTHREAD_CFLAGS)
plugins_state_redis_state_redis_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_state_redis_state_redis_la_LIBADD = $(HIREDIS_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/state-redis/state_redis.c plugins/state-redis/README.md
