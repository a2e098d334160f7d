# dapr CLI tests: pytest runs the built dapr (run, list, stop, init,
# uninstall, invoke, run templates, signals, exit codes) with HOME set to a
# temporary folder (t/cli/run.sh sets the paths).
TESTS += t/cli/run.sh
EXTRA_DIST += t/cli/run.sh \
	t/cli/app.py \
	t/cli/conftest.py \
	t/cli/test_cli.py \
	t/cli/test_run.py
