# nameresolution.mdns: sidecars find each other with multicast DNS on the
# local link, as Dapr's default self-hosted resolver.  The small DNS codec
# (dns_msg.c) is ours: see README.md in this folder for why no library.
plugin_LTLIBRARIES += plugins/nameresolution-mdns/nameresolution-mdns.la
plugins_nameresolution_mdns_nameresolution_mdns_la_SOURCES = \
	plugins/nameresolution-mdns/nr_mdns.c \
	plugins/nameresolution-mdns/dns_msg.c plugins/nameresolution-mdns/dns_msg.h
plugins_nameresolution_mdns_nameresolution_mdns_la_CFLAGS = $(AM_CFLAGS) \
	$(PLUGIN_COMPILE_FLAGS) $(PTHREAD_CFLAGS)
plugins_nameresolution_mdns_nameresolution_mdns_la_LDFLAGS = $(PLUGIN_LINK_FLAGS)
plugins_nameresolution_mdns_nameresolution_mdns_la_LIBADD = $(PTHREAD_LIBS)

# The packet parser's fuzz target, replayed by `make check` over a corpus
# of crafted packets and single-byte mutations of each (no clang needed).
check_PROGRAMS += plugins/nameresolution-mdns/fuzz-dns-replay
TESTS += plugins/nameresolution-mdns/fuzz-dns-replay
plugins_nameresolution_mdns_fuzz_dns_replay_SOURCES = \
	plugins/nameresolution-mdns/fuzz_dns_msg.c \
	plugins/nameresolution-mdns/fuzz_replay.c \
	plugins/nameresolution-mdns/dns_msg.c plugins/nameresolution-mdns/dns_msg.h

# Unit tests of the codec (Check).
if HAVE_CHECK
check_PROGRAMS += plugins/nameresolution-mdns/check-dns-msg
TESTS += plugins/nameresolution-mdns/check-dns-msg
plugins_nameresolution_mdns_check_dns_msg_SOURCES = \
	plugins/nameresolution-mdns/check_dns_msg.c \
	plugins/nameresolution-mdns/dns_msg.c plugins/nameresolution-mdns/dns_msg.h
plugins_nameresolution_mdns_check_dns_msg_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
plugins_nameresolution_mdns_check_dns_msg_LDADD = $(CHECK_LIBS)
endif

# libFuzzer build, by hand when clang is installed:
#   make mdns-fuzz && plugins/nameresolution-mdns/fuzz-dns-msg \
#       -max_total_time=60 $(srcdir)/plugins/nameresolution-mdns/fuzz-corpus \
	plugins/nameresolution-mdns/gen_corpus.py
MDNS_FUZZ_SRC = $(srcdir)/plugins/nameresolution-mdns
mdns-fuzz:
	$${CLANG:-clang} -g -O1 -fsanitize=fuzzer,address,undefined \
		-I$(MDNS_FUZZ_SRC) $(MDNS_FUZZ_SRC)/fuzz_dns_msg.c \
		$(MDNS_FUZZ_SRC)/dns_msg.c -o plugins/nameresolution-mdns/fuzz-dns-msg
.PHONY: mdns-fuzz
CLEANFILES += plugins/nameresolution-mdns/fuzz-dns-msg

EXTRA_DIST += plugins/nameresolution-mdns/README.md \
	plugins/nameresolution-mdns/fuzz-corpus \
	plugins/nameresolution-mdns/gen_corpus.py
