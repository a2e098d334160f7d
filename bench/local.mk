# bench/: benchmarks, shipped in the tarball but never run by make (only
# mongodb-direct is built; they measure, they do not assert).  See bench/README.md.
EXTRA_DIST += \
	bench/README.md \
	bench/RESULTS.md \
	bench/state-bench.sh \
	bench/startup-time.py \
	bench/state-save.lua \
	bench/invoke-bench.sh \
	bench/invoke-app.c
EXTRA_DIST += bench/redis-bench.sh
EXTRA_DIST += bench/postgresql-bench.sh
EXTRA_DIST += bench/pubsub-bench.sh bench/pubsub-publish.lua bench/pubsub-app.c \
	bench/pubsub-direct.c bench/pubsub-stats.h
# The direct libmongoc reference loop of mongodb-bench.sh, built with the
# tree when state.mongodb is (it needs libmongoc too).
EXTRA_DIST += bench/mongodb-bench.sh bench/mongodb-direct.c
if BUILD_STATE_MONGODB
noinst_PROGRAMS += bench/mongodb-direct
bench_mongodb_direct_SOURCES = bench/mongodb-direct.c
bench_mongodb_direct_CFLAGS = $(AM_CFLAGS) $(LIBMONGOC_CFLAGS) $(PTHREAD_CFLAGS)
bench_mongodb_direct_LDADD = $(LIBMONGOC_LIBS) $(PTHREAD_LIBS)
endif
