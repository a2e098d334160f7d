# bench/: benchmarks, shipped in the tarball but never built or run by
# make (they measure, they do not assert).  See bench/README.md.
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
