/* uuid_gen.h - random (version 4) UUIDs from getrandom(). */
#ifndef DAPRD_UUID_GEN_H
#define DAPRD_UUID_GEN_H
/* Write a UUID v4 in canonical form (36 chars + NUL) to out. */
void uuid_v4(char out[37]);
#endif
