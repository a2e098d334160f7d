/*
 * api_logging.c - the API log line (see api_logging.h).
 *
 * The line is written from the loop thread when the reply goes out, so
 * it carries the final status and the time the call took.  The path is
 * the decoded one (or its template with obfuscateURLs); query strings are
 * never logged because metadata.* parameters may carry credentials, and
 * every value passes through the logger's secret scrubbing.
 */
#include "config.h"
#include "api_logging.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define SCOPE "dapr.runtime.http-info"

static api_logging_opts opts;

void api_logging_configure(const api_logging_opts *o)
{
    opts = *o;
}

static int is_health_check(api_call *c)
{
    return c->n_seg >= 2 && strcmp(c->seg[0], "v1.0") == 0 && strcmp(c->seg[1], "healthz") == 0;
}

void api_logging_call(api_call *c, int status)
{
    if (!opts.enabled || c->internal || (opts.omit_health_checks && is_health_check(c)))
        return;
    char path[1024];
    if (opts.obfuscate_urls) {
        api_path_template(c, path, sizeof path);
    } else {
        size_t pos = 0;
        path[0] = '\0';
        for (size_t i = 0; i < c->n_seg && pos + 1 < sizeof path; i++) {
            int n = snprintf(path + pos, sizeof path - pos, "/%s", c->seg[i]);
            pos = n > 0 && pos + (size_t)n < sizeof path ? pos + (size_t)n : sizeof path - 1;
        }
        if (pos == 0)
            snprintf(path, sizeof path, "/");
    }
    char method[1100], code[16], duration[32];
    snprintf(method, sizeof method, "%s %s", api_method_name(c), path);
    snprintf(code, sizeof code, "%d", status);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - c->started.tv_sec) * 1e3 + (double)(now.tv_nsec - c->started.tv_nsec) / 1e6;
    snprintf(duration, sizeof duration, "%lld", (long long)ms); /* whole ms, as Dapr */
    const char *ua = api_header(c, "User-Agent");
    const char *fields[] = {"method", method, "code", code, "duration", duration,
                            ua ? "useragent" : NULL, ua, NULL};
    log_write_fields(LOG_LEVEL_INFO, SCOPE, fields, "HTTP API Called");
}
