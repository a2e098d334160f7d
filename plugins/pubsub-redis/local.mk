# pubsub.redis: Dapr pub/sub on Redis Streams through hiredis, in the data
# layout of Dapr's own pubsub.redis.  Built only when configure found
# hiredis (the BUILD_STATE_REDIS conditional, shared with state.redis).
if BUILD_STATE_REDIS
plugin_LTLIBRARIES += plugins/pubsub-redis/pubsub-redis.la
plugins_pubsub_redis_pubsub_redis_la_SOURCES = plugins/pubsub-redis/pubsub_redis.c
plugins_pubsub_redis_pubsub_redis_la_CFLAGS = $(AM_CFLAGS) $(PLUGIN_COMPILE_FLAGS) \
	$(HIREDIS_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
plugins_pubsub_redis_pubsub_redis_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_pubsub_redis_pubsub_redis_la_LIBADD = $(HIREDIS_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# Shipped by `make dist` even when this machine does not build the plugin.
EXTRA_DIST += plugins/pubsub-redis/pubsub_redis.c plugins/pubsub-redis/README.md
