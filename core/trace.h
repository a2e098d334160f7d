/* trace.h - W3C Trace Context propagation (a new span id at every hop). */
#ifndef DAPRD_TRACE_H
#define DAPRD_TRACE_H

#define TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

/* Write the traceparent for the next hop into out (TRACEPARENT_LEN + 1
 * bytes): the incoming trace id and flags with a new span id, or a new
 * trace when incoming is absent or invalid. */
void trace_next_hop(const char *incoming, char *out);

/* Is s a valid version-00 traceparent? */
int trace_parent_valid(const char *s);

#endif
