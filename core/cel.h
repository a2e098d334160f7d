/*
 * cel.h - a small evaluator for the subset of CEL (Common Expression
 * Language) that Dapr users write in pub/sub routing rules
 * ("match: event.type == 'widget'").
 *
 * The only variable is `event`, the CloudEvent as a JSON object.  Supported:
 *   - member access and indexing: event.data.a.b, event.data["k"],
 *     event.data.items[0]
 *   - literals: strings ('..', "..", r"..", '''..''' with CEL escapes),
 *     ints (decimal, 0x hex), doubles, true/false/null, lists [1, 2]
 *   - == != < <= > >= (ints and doubles compare with each other; == between
 *     values of different types is false, as in CEL; ordering between
 *     different types is an evaluation error)
 *   - && || ! with CEL's error absorption (false && error == false,
 *     true || error == true), c ? a : b, `in` (list element / map key)
 *   - + - * / % on numbers (int op int stays int, overflow is an error; a
 *     double on either side gives a double), + on strings and on lists
 *   - has(event.data.x), size(x) / x.size(), int(x), double(x), string(x)
 *   - s.startsWith(t), s.endsWith(t), s.contains(t), s.matches(re)
 *     NOTE: matches() uses POSIX extended regular expressions (regcomp with
 *     REG_EXTENDED), not RE2: a literal pattern using RE2-only syntax such as
 *     (?i) or \d is refused at compile time.
 * Anything else (macros all/exists/map/filter, map literals, other
 * functions, other variables, bytes and uint literals) is refused by
 * cel_compile() so that a bad Subscription is refused when it is loaded.
 *
 * A compiled program is immutable: any number of threads may call
 * cel_eval_bool() on the same program at once, and on the same event too:
 * evaluation only reads the event (not even its reference counts).
 */
#ifndef DAPR_CEL_H
#define DAPR_CEL_H

#include <stddef.h>
#include <jansson.h>

/* Hostile input limits: longer expressions and deeper nesting are refused
 * at compile time, which also bounds the evaluator's recursion. */
#define CEL_MAX_EXPR_LEN 4096
#define CEL_MAX_DEPTH 64

typedef struct cel_program cel_program;

/* Compiles a NUL-terminated expression.  Returns NULL on error with a
 * message in err naming the problem, its column (1-based) and the
 * expression. */
cel_program *cel_compile(const char *expr, char *err, size_t errlen);

/* The same for an expression of known length: an expression that holds a
 * NUL byte is refused instead of being silently cut short.  Use this one
 * with strings that come from JSON or YAML (json_string_length()). */
cel_program *cel_compilen(const char *expr, size_t len, char *err, size_t errlen);

/* Evaluates the program with `event` bound to the given JSON value.
 * Returns 1 when the expression is true, 0 when it is false.
 * An evaluation error (missing key, type mismatch, division by zero, a
 * non-bool result...) also returns 0, with the reason in err; otherwise
 * err is set to "".  Dapr itself fails the delivery (the message is
 * retried) when a rule cannot be evaluated, so a caller that wants exactly
 * that behaviour treats "0 with err[0] != 0" as an error.
 * Returns -1 only when evaluation could not run at all (NULL arguments,
 * out of memory), with err set. */
int cel_eval_bool(const cel_program *p, json_t *event, char *err, size_t errlen);

/* The source text the program was compiled from. */
const char *cel_source(const cel_program *p);

void cel_free(cel_program *p);

#endif
