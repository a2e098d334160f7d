bin_PROGRAMS += core/daprd
core_daprd_SOURCES = core/daprd.c
