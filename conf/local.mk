# Sample configuration: the systemd unit template, an environment file
# and component manifests.

# daprd@.service is generated at build time so that it names the
# installed daprd and configuration folder ($(bindir) and $(sysconfdir)
# are only final once make runs: they may still contain ${prefix}).
EXTRA_DIST += conf/daprd@.service.in
CLEANFILES += conf/daprd@.service

conf/daprd@.service: $(top_srcdir)/conf/daprd@.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) conf && \
	sed -e 's|@bindir[@]|$(bindir)|g' \
	    -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	    $(top_srcdir)/conf/daprd@.service.in > $@.tmp && mv $@.tmp $@

if INSTALL_SYSTEMD_UNIT
nodist_systemdsystemunit_DATA = conf/daprd@.service
endif

# Sample manifests go to $(sysconfdir)/dapr/components (point daprd at
# them with --resources-path); the sample environment file goes to
# $(sysconfdir)/dapr, to be copied to <app-id>.env.
daprcomponentsdir = $(sysconfdir)/dapr/components
dist_daprcomponents_DATA = conf/components/statestore.yaml conf/components/inmemory.yaml
daprconfdir = $(sysconfdir)/dapr
dist_daprconf_DATA = conf/daprd.env.example
