# bench/: benchmarks, shipped in the tarball but never built or run by
# make (they measure, they do not assert).  See bench/README.md.
EXTRA_DIST += \
	bench/README.md \
	bench/RESULTS.md \
	bench/state-bench.sh \
	bench/startup-time.py \
	bench/state-save.lua
