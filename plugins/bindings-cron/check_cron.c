/*
 * check_cron.c - unit tests of the cron schedule parser and next-time
 * search (cron_schedule.c), on the edge cases where cron implementations
 * usually differ: ranges, steps, lists, names, the day-of-month /
 * day-of-week OR rule, month ends, leap years, descriptors, @every, time
 * zone prefixes, and the parse errors Dapr gives.  All times are UTC.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm */
#endif
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron_schedule.h"

/* "YYYY-MM-DD HH:MM:SS" (UTC) <-> milliseconds since the epoch. */
static int64_t T(const char *s)
{
    struct tm tm = {0};
    ck_assert_msg(sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                         &tm.tm_sec) == 6, "bad time literal %s", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

static const char *S(int64_t ms, char *buf)
{
    if (ms < 0)
        return strcpy(buf, "never");
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
    if (ms % 1000)
        sprintf(buf + strlen(buf), ".%03d", (int)(ms % 1000));
    return buf;
}

static cron_schedule P(const char *spec)
{
    cron_schedule s;
    char err[256] = "";
    ck_assert_msg(cron_parse(spec, &s, err, sizeof err) == 0, "'%s' refused: %s", spec, err);
    return s;
}

/* next(spec, from) == want ("never" for none). */
static void next_is(const char *spec, const char *from, const char *want)
{
    cron_schedule s = P(spec);
    char got[40];
    S(cron_next(&s, T(from)), got);
    ck_assert_msg(strcmp(got, want) == 0, "'%s' after %s: got %s, want %s", spec, from, got, want);
}

/* Successive activations from `from`. */
static void sequence_is(const char *spec, const char *from, const char *const *want, size_t n)
{
    cron_schedule s = P(spec);
    int64_t t = T(from);
    for (size_t i = 0; i < n; i++) {
        t = cron_next(&s, t);
        char got[40];
        S(t, got);
        ck_assert_msg(strcmp(got, want[i]) == 0, "'%s' activation %zu: got %s, want %s", spec, i, got, want[i]);
    }
}

static void refused(const char *spec, const char *why_part)
{
    cron_schedule s;
    char err[256] = "";
    ck_assert_msg(cron_parse(spec, &s, err, sizeof err) != 0, "'%s' was accepted", spec);
    ck_assert_msg(strstr(err, why_part) != NULL, "'%s': error '%s' lacks '%s'", spec, err, why_part);
}

START_TEST(test_every_second_and_seconds_field)
{
    next_is("* * * * * *", "2024-01-01 00:00:00", "2024-01-01 00:00:01");
    next_is("*/15 * * * * *", "2024-01-01 00:00:00", "2024-01-01 00:00:15");
    next_is("*/15 * * * * *", "2024-01-01 00:00:59", "2024-01-01 00:01:00");
    next_is("30 * * * * *", "2024-01-01 00:00:30", "2024-01-01 00:01:30");
    /* 5 fields: seconds are 0 */
    next_is("* * * * *", "2024-01-01 00:00:00", "2024-01-01 00:01:00");
    next_is("0 15 * * *", "2024-01-01 14:59:59", "2024-01-01 15:00:00"); /* minute 0, hour 15 */
    next_is("15 * * * *", "2024-01-01 14:59:59", "2024-01-01 15:15:00");
    /* strictly after: a time that matches is not returned again */
    next_is("0 0 12 * * *", "2024-01-01 12:00:00", "2024-01-02 12:00:00");
    /* milliseconds are dropped before the search */
    cron_schedule s = P("* * * * * *");
    ck_assert_int_eq(cron_next(&s, T("2024-01-01 00:00:00") + 999), T("2024-01-01 00:00:01"));
}
END_TEST

START_TEST(test_ranges_steps_lists)
{
    static const char *const a[] = {"2024-01-01 03:00:00", "2024-01-01 03:30:00", "2024-01-01 04:00:00",
                                    "2024-01-01 04:30:00", "2024-01-01 05:00:00", "2024-01-01 05:30:00",
                                    "2024-01-01 06:00:00", "2024-01-01 06:30:00", "2024-01-01 20:00:00"};
    sequence_is("0 0,30 3-6,20-23 * * *", "2024-01-01 00:00:00", a, 9);
    /* N/step is N..max/step */
    static const char *const b[] = {"2024-01-01 00:00:05", "2024-01-01 00:00:25", "2024-01-01 00:00:45",
                                    "2024-01-01 00:01:05"};
    sequence_is("5/20 * * * * *", "2024-01-01 00:00:00", b, 4);
    /* range with step */
    static const char *const c[] = {"2024-01-01 10:00:00", "2024-01-01 13:00:00", "2024-01-01 16:00:00",
                                    "2024-01-02 10:00:00"};
    sequence_is("0 0 10-17/3 * * *", "2024-01-01 00:00:00", c, 4);
    /* duplicates and empty list items are harmless */
    next_is("0 0 5,5,,7 * * *", "2024-01-01 06:00:00", "2024-01-01 07:00:00");
    /* ? is a synonym of * */
    next_is("0 0 0 ? * ?", "2024-01-01 00:00:00", "2024-01-02 00:00:00");
    /* leading zeros and a plus sign are numbers (Go's Atoi) */
    next_is("0 05 +7 * * *", "2024-01-01 00:00:00", "2024-01-01 07:05:00");
}
END_TEST

START_TEST(test_names)
{
    /* 2024-01-01 was a Monday */
    next_is("0 0 9 * * MON", "2024-01-01 09:00:00", "2024-01-08 09:00:00");
    next_is("0 0 9 * * mon-fri", "2024-01-05 10:00:00", "2024-01-08 09:00:00");
    next_is("0 0 9 * * Sat,SUN", "2024-01-01 00:00:00", "2024-01-06 09:00:00");
    next_is("0 0 0 1 JAN *", "2024-01-01 00:00:00", "2025-01-01 00:00:00");
    next_is("0 0 0 1 feb-Apr *", "2024-04-01 00:00:00", "2025-02-01 00:00:00");
    next_is("0 0 0 * * 0", "2024-01-01 00:00:00", "2024-01-07 00:00:00");
    next_is("0 0 0 * * 6", "2024-01-01 00:00:00", "2024-01-06 00:00:00");
}
END_TEST

START_TEST(test_dom_dow_or_rule)
{
    /* both restricted: the 13th OR any Friday */
    static const char *const a[] = {"2024-09-06 00:00:00", "2024-09-13 00:00:00", "2024-09-20 00:00:00",
                                    "2024-09-27 00:00:00", "2024-10-04 00:00:00", "2024-10-11 00:00:00",
                                    "2024-10-13 00:00:00"};
    sequence_is("0 0 0 13 * FRI", "2024-09-01 00:00:00", a, 7);
    /* day-of-week is a star: only the day of month counts (AND) */
    next_is("0 0 0 13 * *", "2024-09-01 00:00:00", "2024-09-13 00:00:00");
    /* day-of-month is a star: only the day of week counts */
    next_is("0 0 0 * * FRI", "2024-09-01 00:00:00", "2024-09-06 00:00:00");
    /* a stepped star is a restriction: "*" + "/2" on dom ORs with dow */
    next_is("0 0 0 */2 * MON", "2024-01-01 00:00:00", "2024-01-03 00:00:00");
    next_is("0 0 0 */2 * MON", "2024-01-07 00:00:00", "2024-01-08 00:00:00");
    /* "*" + "/1" keeps the star: AND */
    next_is("0 0 0 */1 * MON", "2024-01-01 00:00:00", "2024-01-08 00:00:00");
}
END_TEST

START_TEST(test_month_ends_and_leap_years)
{
    /* the 31st skips months without one */
    static const char *const a[] = {"2024-01-31 00:00:00", "2024-03-31 00:00:00", "2024-05-31 00:00:00",
                                    "2024-07-31 00:00:00", "2024-08-31 00:00:00"};
    sequence_is("0 0 0 31 * *", "2024-01-01 00:00:00", a, 5);
    /* Feb 29 only in leap years; 2100 is not one, 2000 was */
    next_is("0 0 0 29 2 *", "2024-03-01 00:00:00", "2028-02-29 00:00:00");
    next_is("0 0 0 29 2 *", "2023-01-01 00:00:00", "2024-02-29 00:00:00");
    next_is("0 0 0 29 2 *", "1999-03-01 00:00:00", "2000-02-29 00:00:00");
    /* 2100 is not a leap year and 2104 is more than five years away:
     * Dapr's search gives up, and so does this one */
    next_is("0 0 0 29 2 *", "2096-03-01 00:00:00", "never");
    next_is("0 0 0 29 2 *", "2099-03-01 00:00:00", "2104-02-29 00:00:00");
}
END_TEST

START_TEST(test_never)
{
    /* a date that never exists: no activation within five years */
    next_is("0 0 0 30 2 *", "2024-01-01 00:00:00", "never");
    next_is("0 0 0 31 4,6,9,11 *", "2024-01-01 00:00:00", "never");
}
END_TEST

START_TEST(test_rollovers)
{
    next_is("59 59 23 31 12 *", "2024-06-01 00:00:00", "2024-12-31 23:59:59");
    next_is("0 0 0 1 1 *", "2024-12-31 23:59:59", "2025-01-01 00:00:00");
    next_is("* * * * * *", "2024-12-31 23:59:59", "2025-01-01 00:00:00");
    next_is("0 30 * * * *", "2024-02-29 23:45:00", "2024-03-01 00:30:00");
    next_is("10 * * * * *", "2024-02-28 23:59:30", "2024-02-29 00:00:10");
    next_is("0 0 12 * 3 *", "2023-12-15 00:00:00", "2024-03-01 12:00:00");
}
END_TEST

START_TEST(test_descriptors)
{
    next_is("@hourly", "2024-01-01 10:20:30", "2024-01-01 11:00:00");
    next_is("@daily", "2024-01-01 10:20:30", "2024-01-02 00:00:00");
    next_is("@midnight", "2024-01-01 00:00:00", "2024-01-02 00:00:00");
    next_is("@weekly", "2024-01-01 10:00:00", "2024-01-07 00:00:00"); /* Sunday */
    next_is("@monthly", "2024-01-31 10:00:00", "2024-02-01 00:00:00");
    next_is("@yearly", "2024-01-01 00:00:00", "2025-01-01 00:00:00");
    next_is("@annually", "2024-06-01 00:00:00", "2025-01-01 00:00:00");
    refused("@fortnightly", "unrecognized descriptor");
    refused("@Hourly", "unrecognized descriptor");
}
END_TEST

START_TEST(test_every)
{
    cron_schedule s = P("@every 15s");
    ck_assert_int_eq(s.every, 1);
    ck_assert_int_eq(cron_next(&s, 1000), 16000);
    s = P("@every 1m30s");
    ck_assert_int_eq(s.delay_ms, 90000);
    s = P("@every 1.5h");
    ck_assert_int_eq(s.delay_ms, 5400000);
    s = P("@every 250ms");
    ck_assert_int_eq(s.delay_ms, 250);
    s = P("@every 1500us"); /* truncated to the millisecond */
    ck_assert_int_eq(s.delay_ms, 1);
    s = P("@every 10ns"); /* at least 1 ms */
    ck_assert_int_eq(s.delay_ms, 1);
    s = P("@every 0");
    ck_assert_int_eq(s.delay_ms, 1);
    s = P("@every 1h1m1s1ms");
    ck_assert_int_eq(s.delay_ms, 3661001);
    refused("@every 5", "failed to parse duration");
    refused("@every", "unrecognized descriptor");
    refused("@every 5x", "failed to parse duration");
    refused("@every  5s", "failed to parse duration"); /* Dapr does not trim either */
    refused("@every s", "failed to parse duration");
}
END_TEST

START_TEST(test_time_zone_prefix)
{
    next_is("TZ=UTC 0 0 12 * * *", "2024-01-01 00:00:00", "2024-01-01 12:00:00");
    next_is("CRON_TZ=Etc/UTC @hourly", "2024-01-01 00:10:00", "2024-01-01 01:00:00");
    refused("CRON_TZ=America/New_York 0 0 12 * * *", "not supported");
    refused("TZ=UTC", "not followed by a schedule");
}
END_TEST

START_TEST(test_errors)
{
    refused("", "empty spec");
    refused("* * * *", "expected 5 to 6 fields, found 4");
    refused("* * * * * * *", "expected 5 to 6 fields, found 7");
    refused("60 * * * * *", "above maximum (59)");
    refused("* * 24 * * *", "above maximum (23)");
    refused("* * * 0 * *", "below minimum (1)");
    refused("* * * 32 * *", "above maximum (31)");
    refused("* * * * 13 *", "above maximum (12)");
    refused("* * * * * 7", "above maximum (6)"); /* as Dapr: Sunday is 0 only */
    refused("* * * * * 5-2", "beyond end of range");
    refused("*/0 * * * * *", "step of range should be a positive number");
    refused("1-2-3 * * * * *", "too many hyphens");
    refused("*/2/3 * * * * *", "too many slashes");
    refused("x * * * * *", "failed to parse int");
    refused("-1 * * * * *", "failed to parse int");
    refused("* * * * * FRIDAY", "failed to parse int");
    refused("* * * JAN * *", "failed to parse int"); /* names only where they belong */
}
END_TEST

START_TEST(test_go_duration)
{
    int64_t ns;
    ck_assert_int_eq(cron_parse_go_duration("300ms", &ns), 0);
    ck_assert_int_eq(ns, 300000000);
    ck_assert_int_eq(cron_parse_go_duration("-1.5h", &ns), 0);
    ck_assert_int_eq(ns, -5400000000000LL);
    ck_assert_int_eq(cron_parse_go_duration("2h45m", &ns), 0);
    ck_assert_int_eq(ns, 9900000000000LL);
    ck_assert_int_eq(cron_parse_go_duration("1\xc2\xb5s", &ns), 0);
    ck_assert_int_eq(ns, 1000);
    ck_assert_int_eq(cron_parse_go_duration(".5s", &ns), 0);
    ck_assert_int_eq(ns, 500000000);
    ck_assert_int_eq(cron_parse_go_duration("", &ns), -1);
    ck_assert_int_eq(cron_parse_go_duration(".s", &ns), -1);
    ck_assert_int_eq(cron_parse_go_duration("1d", &ns), -1);
    ck_assert_int_eq(cron_parse_go_duration("99999999999999h", &ns), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cron");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, test_every_second_and_seconds_field);
    tcase_add_test(tc, test_ranges_steps_lists);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_dom_dow_or_rule);
    tcase_add_test(tc, test_month_ends_and_leap_years);
    tcase_add_test(tc, test_never);
    tcase_add_test(tc, test_rollovers);
    tcase_add_test(tc, test_descriptors);
    tcase_add_test(tc, test_every);
    tcase_add_test(tc, test_time_zone_prefix);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_go_duration);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
