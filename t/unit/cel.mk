# CEL evaluator for pub/sub routing rules (core/cel.c): Check unit test,
# which also replays the fuzz corpus through the libFuzzer entry point so
# that the target is exercised by every `make check`.
#
# cel.c is compiled into the test directly so that the test does not depend
# on core/libdaprcore.la listing it; this stays correct once it does.
if HAVE_CHECK
check_PROGRAMS += t/unit/check_cel
TESTS += t/unit/check_cel
t_unit_check_cel_SOURCES = t/unit/check_cel.c t/unit/fuzz_cel.c core/cel.c core/cel.h
t_unit_check_cel_CPPFLAGS = -I$(top_srcdir)/core \
	-DCEL_CORPUS_DIR='"$(abs_top_srcdir)/t/unit/cel-corpus"'
t_unit_check_cel_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS) $(PTHREAD_CFLAGS)
t_unit_check_cel_LDADD = $(CHECK_LIBS) $(JANSSON_LIBS) $(PTHREAD_LIBS)
endif

# libFuzzer build, by hand, with clang:
#   make cel-fuzz CC=clang
#   t/unit/fuzz-cel -max_total_time=60 -max_len=4096 $(srcdir)/t/unit/cel-corpus
# (copy new interesting inputs into a scratch folder, not the seed corpus).
cel-fuzz:
	@case "`$(CC) --version 2>/dev/null`" in *clang*) ;; \
	  *) echo "cel-fuzz needs clang: make cel-fuzz CC=clang" >&2; exit 1;; esac
	$(CC) -g -O1 -fsanitize=fuzzer,address,undefined -I$(top_builddir) -I$(srcdir)/core \
		$(JANSSON_CFLAGS) $(srcdir)/t/unit/fuzz_cel.c $(srcdir)/core/cel.c \
		$(JANSSON_LIBS) -o t/unit/fuzz-cel
.PHONY: cel-fuzz
CLEANFILES += t/unit/fuzz-cel

EXTRA_DIST += t/unit/cel-corpus
