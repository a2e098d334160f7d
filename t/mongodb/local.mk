# state.mongodb against a throwaway FerretDB (a MongoDB wire-protocol
# server, built from the Go module proxy on first use and cached under the
# build tree in t/mongodb-cache/), on PostgreSQL (a throwaway cluster) or
# SQLite: conformance kit, daprd, query, injection, interop and fault
# tests.  See t/mongodb/run.sh.
TESTS += t/mongodb/run.sh
EXTRA_DIST += t/mongodb/run.sh t/mongodb/build-ferretdb.sh t/mongodb/mongo-doc.c

# A tiny libmongoc client for the interop test (reads and writes documents
# in Dapr's layout without going through the plugin).
if BUILD_STATE_MONGODB
check_PROGRAMS += t/mongodb/mongo-doc
t_mongodb_mongo_doc_SOURCES = t/mongodb/mongo-doc.c
t_mongodb_mongo_doc_CFLAGS = $(AM_CFLAGS) $(LIBMONGOC_CFLAGS)
t_mongodb_mongo_doc_LDADD = $(LIBMONGOC_LIBS)
endif

# The FerretDB binary is a folder's worth of cache: CLEANFILES cannot
# remove it.  Rebuilding after `make clean` relinks from Go's own cache.
clean-mongodb-cache:
	rm -rf t/mongodb-cache
CLEAN_LOCAL_HOOKS += clean-mongodb-cache
.PHONY: clean-mongodb-cache
