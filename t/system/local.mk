# System tests: daprd as a whole process, with the test plugins of
# t/plugins/ (built by `make check`) and systemd's view of it.  Each script
# runs from the top build folder and reads $srcdir; exit 77 = skipped
# (curl, python3 or systemd-analyze missing).
TESTS += t/system/test-loader.sh t/system/test-sd-notify.sh \
	t/system/test-systemd-unit.sh
EXTRA_DIST += t/system/lib.sh t/system/test-loader.sh \
	t/system/test-sd-notify.sh t/system/test-sd-notify.py \
	t/system/test-systemd-unit.sh
