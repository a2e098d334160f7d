# Logging: JSON lines, API logging, run-time log level changes (pytest
# against real daprd processes).
TESTS += t/logs/run.sh
EXTRA_DIST += t/logs/run.sh t/logs/test_logs.py
