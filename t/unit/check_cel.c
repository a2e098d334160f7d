/*
 * check_cel.c - unit tests of the CEL evaluator used by pub/sub routing
 * rules (core/cel.c): every construct, precedence, CEL's error absorption
 * in && and ||, type errors, Dapr's documented examples, refusals at
 * compile time, hostile input, and a replay of the fuzz corpus.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A CloudEvent as daprd hands it to the evaluator. */
static const char event_json[] =
    "{\"id\":\"5929aaac-a5e2-4ca1-859c-edfe73f11565\",\"source\":\"checkout\",\"type\":\"widget\","
    "\"specversion\":\"1.0\",\"datacontenttype\":\"application/json\",\"subject\":\"orders/42\","
    "\"topic\":\"inventory\",\"pubsubname\":\"pubsub\",\"traceparent\":\"00-abc-def-01\","
    "\"myext\":\"blue\","
    "\"data\":{\"price\":150,\"amount\":10000.5,\"important\":true,\"name\":\"Gizmo\","
    "\"tags\":[\"a\",\"b\"],\"items\":[{\"id\":1},{\"id\":2}],\"nested\":{\"a\":{\"b\":\"deep\"}},"
    "\"zero\":0,\"nul\":null,\"ratio\":0.5,\"flag\":false,\"k\":\"v\",\"weird key\":1,"
    "\"num_str\":\"42\",\"utf\":\"h\\u00e9llo\",\"big\":9223372036854775807,\"in\":1}}";

static json_t *event;

static void setup(void) {
    event = json_loads(event_json, 0, NULL);
    ck_assert_ptr_nonnull(event);
}

static void teardown(void) { json_decref(event); }

/* Compiles and evaluates; -2 means it did not compile. */
static int run(const char *expr, char *err, size_t errlen) {
    cel_program *p = cel_compile(expr, err, errlen);
    if (!p) {
        ck_assert_msg(err[0] != '\0', "compile of <%s> failed without a message", expr);
        return -2;
    }
    int rc = cel_eval_bool(p, event, err, errlen);
    cel_free(p);
    return rc;
}

#define MATCH(e)                                                                     \
    do {                                                                             \
        char err_[256];                                                              \
        int rc_ = run(e, err_, sizeof(err_));                                        \
        ck_assert_msg(rc_ == 1 && !err_[0], "<%s>: want match, got %d (%s)", e, rc_, \
                      err_);                                                         \
    } while (0)

#define NOMATCH(e)                                                                        \
    do {                                                                                  \
        char err_[256];                                                                   \
        int rc_ = run(e, err_, sizeof(err_));                                             \
        ck_assert_msg(rc_ == 0 && !err_[0], "<%s>: want no match, got %d (%s)", e, rc_, \
                      err_);                                                              \
    } while (0)

/* An evaluation error: no match, with the reason in err. */
#define EVALERR(e, why)                                                                       \
    do {                                                                                      \
        char err_[256];                                                                       \
        int rc_ = run(e, err_, sizeof(err_));                                                 \
        ck_assert_msg(rc_ == 0 && strstr(err_, why), "<%s>: want eval error '%s', got %d (%s)", \
                      e, why, rc_, err_);                                                     \
    } while (0)

#define BADCOMPILE(e, why)                                                                 \
    do {                                                                                   \
        char err_[512];                                                                    \
        cel_program *p_ = cel_compile(e, err_, sizeof(err_));                              \
        ck_assert_msg(!p_ && strstr(err_, why), "<%s>: want compile error '%s', got (%s)", \
                      e, why, p_ ? "compiled" : err_);                                     \
        cel_free(p_);                                                                      \
    } while (0)

/* ---- Dapr's own examples ------------------------------------------------ */

START_TEST(dapr_doc_examples) {
    MATCH("event.type == \"widget\"");
    NOMATCH("event.type == \"gadget\"");
    NOMATCH("event.data.price > 100 && event.type == \"gadget\"");
    MATCH("event.data.price > 100 && event.type == \"widget\"");
    MATCH("has(event.data.important) && event.data.important == true");
    NOMATCH("event.type == \"deposit\" && event.data.amount > 10000");
    MATCH("event.type == \"widget\" && event.data.amount > 10000");
    NOMATCH("event.type == \"mymessage.v1\"");
    /* A missing field is an evaluation error, which is why Dapr's docs
     * guard with has(); the .NET tutorial's rule on an event without the
     * field does not match. */
    EVALERR("event.data.priorityTier == 'express'", "no such key 'priorityTier'");
    NOMATCH("has(event.data.priorityTier) && event.data.priorityTier == 'express'");
    MATCH("event.data.name != 'US' || event.data.missing == 1");
}
END_TEST

/* ---- constructs ----------------------------------------------------------- */

START_TEST(member_access_and_index) {
    MATCH("event.data.nested.a.b == 'deep'");
    MATCH("event.data[\"nested\"]['a'].b == 'deep'");
    MATCH("event[\"data\"].k == 'v'");
    MATCH("event.data['weird key'] == 1");
    MATCH("event.data.items[1].id == 2");
    MATCH("event.data.items[0.0].id == 1"); /* integral double index */
    MATCH("event.data.tags[1] == 'b'");
    MATCH("event.myext == 'blue'");         /* extension attribute */
    MATCH("event.subject == 'orders/42' && event.topic == 'inventory' && event.pubsubname == 'pubsub'");
    MATCH("event.specversion == '1.0' && event.datacontenttype == 'application/json' && event.source == 'checkout'");
    MATCH("event.data.in == 1"); /* keyword as a field name */
    MATCH("[10, 20, 30][2] == 30");
    EVALERR("event.data.missing == 1", "no such key 'missing'");
    EVALERR("event.data['missing'] == 1", "no such key 'missing'");
    EVALERR("event.data.items[2].id == 1", "out of range");
    EVALERR("event.data.items[-1].id == 1", "out of range");
    EVALERR("event.data.items['x'] == 1", "list index is string");
    EVALERR("event.data.items[0.5] == 1", "list index is double");
    EVALERR("event.data.k.x == 1", "string has no field 'x'");
    EVALERR("event.data.k[0] == 'v'", "string cannot be indexed");
    EVALERR("event.data[1] == 1", "no such key");
}
END_TEST

START_TEST(literals) {
    MATCH("'single' == \"single\"");
    MATCH("\"tab\\there\" == 'tab\there'");
    MATCH("\"q\\\"q\" == 'q\"q' && '\\'' == \"'\" && '\\\\' == r'\\'");
    MATCH("\"\\x41\\101\\u00e9\\U0001F600\" == 'A' + 'A' + '\u00e9' + '\U0001F600'");
    MATCH("r'\\d+' == '\\\\d+'");
    MATCH("'''a'b''' == \"a'b\"");
    MATCH("\"\"\"two\nlines\"\"\" == 'two\\nlines'");
    MATCH("event.data.utf == 'h\\u00e9llo'");
    MATCH("1 == 1 && 0x1F == 31 && 0X10 == 16 && -7 < 0");
    MATCH("1.5 == 1.5 && 1e3 == 1000.0 && 2.5E-1 == 0.25 && .5 == 0.5");
    MATCH("9223372036854775807 == event.data.big");
    MATCH("true == true && false != true && null == null");
    MATCH("[1, 2, 3] == [1, 2, 3] && [] == [] && [1, 'a', [true]] == [1, 'a', [true]]");
    MATCH("[1, 2,] == [1, 2]");
    MATCH("size('') == 0 && '' == \"\"");
    MATCH("'a\\x00b' != 'a'");
    BADCOMPILE("9223372036854775808 == 1", "out of range");
    BADCOMPILE("0xFFFFFFFFFFFFFFFFF == 1", "out of range");
    BADCOMPILE("1u == 1", "unsigned integer literals are not supported");
    BADCOMPILE("b'abc' == 'abc'", "bytes literals are not supported");
    BADCOMPILE("'\\q' == 'q'", "invalid escape");
    BADCOMPILE("'\\xZZ' == 'q'", "invalid escape");
    BADCOMPILE("'\\uD800' == 'q'", "not a valid Unicode code point");
    BADCOMPILE("'\\U00110000' == 'q'", "not a valid Unicode code point");
    BADCOMPILE("'\xff' == 'q'", "not valid UTF-8");
    BADCOMPILE("1e999 == 1.0", "invalid double literal");
    BADCOMPILE("12abc == 1", "invalid number");
}
END_TEST

START_TEST(comparisons) {
    MATCH("event.data.price == 150 && event.data.price == 150.0");
    MATCH("event.data.amount > 10000 && event.data.amount < 10001");
    MATCH("event.data.ratio < 1 && 1 > event.data.ratio && 0.5 <= event.data.ratio && event.data.ratio >= 0.5");
    MATCH("event.data.price != 151");
    MATCH("'abc' < 'abd' && 'ab' < 'abc' && 'b' > 'abc' && 'a' <= 'a' && 'é' > 'z'");
    MATCH("false < true");
    /* == between different types is false (CEL's heterogeneous equality). */
    NOMATCH("event.data.price == '150'");
    MATCH("event.data.price != '150'");
    NOMATCH("event.data.nul == 0");
    MATCH("event.data.nul == null");
    NOMATCH("event.data.tags == ['a']");
    MATCH("event.data.nested == event.data.nested");
    MATCH("event.data.items[0] != event.data.items[1]");
    /* Ordering between different types is an evaluation error. */
    EVALERR("event.data.name > 1", "no operator '>' for string and int");
    EVALERR("event.data.nul < 1", "no operator '<' for null and int");
    EVALERR("event.data.tags < event.data.tags", "no operator '<' for list and list");
    BADCOMPILE("'a' < 1", "no operator '<' for string and int");
    BADCOMPILE("'a' == 1", "no operator '==' for string and int");
    BADCOMPILE("null < 1", "no operator '<'");
}
END_TEST

START_TEST(logic_and_short_circuit) {
    MATCH("true && true");
    NOMATCH("true && false");
    MATCH("false || true");
    NOMATCH("false || false");
    MATCH("!false && !!true");
    /* CEL's error absorption, in both orders. */
    NOMATCH("false && event.data.missing == 1");
    NOMATCH("event.data.missing == 1 && false");
    MATCH("true || event.data.missing == 1");
    MATCH("event.data.missing == 1 || true");
    MATCH("event.data.missing || true");               /* non-bool error absorbed too */
    EVALERR("true && event.data.missing == 1", "no such key 'missing'");
    EVALERR("event.data.missing == 1 && true", "no such key 'missing'");
    EVALERR("false || event.data.missing == 1", "no such key 'missing'");
    EVALERR("event.data.name && true", "operand of '&&' is string");
    EVALERR("!event.data.name", "'!' applied to string");
    EVALERR("!event.data.missing", "no such key");
    /* The first error is reported, not a later one. */
    EVALERR("event.data.x1 == 1 || event.data.x2 == 1 || false", "'x1'");
    /* Long chains are flat: no depth problem. */
    MATCH("event.type == 'a' || event.type == 'b' || event.type == 'c' || event.type == 'd' || "
          "event.type == 'e' || event.type == 'f' || event.type == 'g' || event.type == 'h' || "
          "event.type == 'i' || event.type == 'j' || event.type == 'k' || event.type == 'l' || "
          "event.type == 'm' || event.type == 'n' || event.type == 'o' || event.type == 'p' || "
          "event.type == 'q' || event.type == 'r' || event.type == 's' || event.type == 't' || "
          "event.type == 'u' || event.type == 'v' || event.type == 'w' || event.type == 'x' || "
          "event.type == 'y' || event.type == 'z' || event.type == 'aa' || event.type == 'bb' || "
          "event.type == 'cc' || event.type == 'dd' || event.type == 'ee' || event.type == 'ff' || "
          "event.type == 'gg' || event.type == 'hh' || event.type == 'ii' || event.type == 'jj' || "
          "event.type == 'kk' || event.type == 'll' || event.type == 'mm' || event.type == 'nn' || "
          "event.type == 'oo' || event.type == 'pp' || event.type == 'qq' || event.type == 'rr' || "
          "event.type == 'ss' || event.type == 'tt' || event.type == 'uu' || event.type == 'vv' || "
          "event.type == 'ww' || event.type == 'xx' || event.type == 'yy' || event.type == 'zz' || "
          "event.type == 'a1' || event.type == 'b1' || event.type == 'c1' || event.type == 'd1' || "
          "event.type == 'e1' || event.type == 'f1' || event.type == 'g1' || event.type == 'h1' || "
          "event.type == 'i1' || event.type == 'j1' || event.type == 'k1' || event.type == 'widget'");
    BADCOMPILE("'a' && true", "operand of '&&' is string");
    BADCOMPILE("true || 1", "operand of '||' is int");
    BADCOMPILE("!1", "'!' applied to int");
}
END_TEST

START_TEST(precedence) {
    /* && binds tighter than ||. */
    MATCH("true || false && false");
    NOMATCH("(true || false) && false");
    /* ! binds tighter than ==, which binds tighter than &&. */
    MATCH("!false == true");
    MATCH("1 + 2 * 3 == 7 && (1 + 2) * 3 == 9");
    MATCH("10 - 4 - 3 == 3 && 100 / 10 / 5 == 2"); /* left associative */
    MATCH("-2 * -3 == 6 && - -1 == 1");
    MATCH("1 < 2 == true"); /* relations are left associative */
    MATCH("'b' in ['a', 'b'] == true");
    /* ?: has the lowest precedence and nests to the right. */
    MATCH("false ? false : true ? true : false");
    MATCH("1 == 2 ? false : 2 == 2");
    MATCH("event.data.tags.size() + 1 == 3");
}
END_TEST

START_TEST(membership) {
    MATCH("event.type in ['gadget', 'widget']");
    NOMATCH("event.type in ['gadget']");
    MATCH("150 in [1, 150.0]");
    MATCH("'a' in event.data.tags");
    MATCH("'nested' in event.data && !('nope' in event.data)");
    NOMATCH("1 in event.data"); /* non-string key is not in a JSON map */
    MATCH("[1] in [[1], [2]]");
    NOMATCH("'a' in []");
    EVALERR("'a' in event.data.name", "'in' needs a list or a map, not string");
    BADCOMPILE("'a' in 'abc'", "no operator 'in' for string and string");
}
END_TEST

START_TEST(has_macro) {
    MATCH("has(event.data.price)");
    NOMATCH("has(event.data.nope)");
    MATCH("has(event.data.nul)"); /* present, even if null */
    MATCH("has(event.data.nested.a.b) && !has(event.data.nested.a.c)");
    MATCH("has(event.subject) && !has(event.time)");
    EVALERR("has(event.data.nope.x)", "no such key 'nope'");
    EVALERR("has(event.data.name.x)", "string has no field 'x'");
    BADCOMPILE("has(event)", "has() takes one field selection");
    BADCOMPILE("has(event.data['x'])", "has() takes one field selection");
    BADCOMPILE("has(event.a, event.b)", "has() takes one field selection");
}
END_TEST

START_TEST(string_functions) {
    MATCH("event.subject.startsWith('orders/')");
    NOMATCH("event.subject.startsWith('orders/42/x')");
    MATCH("event.subject.endsWith('/42') && event.subject.endsWith('')");
    MATCH("event.data.name.contains('izm') && !event.data.name.contains('xyz') && 'a'.contains('')");
    MATCH("event.source.matches('^check') && !event.source.matches('^out')");
    MATCH("event.data.name.matches('[A-Z][a-z]+')"); /* partial match, as CEL */
    MATCH("matches(event.type, 'idg')");
    MATCH("event.type.matches(event.data.k == 'v' ? 'w.d' : 'zzz')"); /* pattern known only at run time */
    EVALERR("event.type.matches(event.data.k + '(')", "invalid regular expression");
    EVALERR("event.data.price.startsWith('1')", "string function applied to int");
    EVALERR("event.type.contains(event.data.price)", "string function applied to string and int");
    BADCOMPILE("event.type.matches('(')", "invalid regular expression");
    BADCOMPILE("event.type.matches('\\\\d+')", "not RE2");
    BADCOMPILE("event.type.matches('(?i)widget')", "not RE2");
    BADCOMPILE("event.type.matches('a+?')", "non-greedy");
    MATCH("event.type.matches('[?]|widget')"); /* '?' in brackets is fine */
    BADCOMPILE("event.type.startsWith(1)", "string function applied to int");
    BADCOMPILE("1.startsWith('1')", "string function applied to int");
    BADCOMPILE("event.type.startsWith()", "startsWith() takes 1 argument");
    BADCOMPILE("event.type.startsWith('a', 'b')", "startsWith() takes 1 argument");
}
END_TEST

START_TEST(size_and_conversions) {
    MATCH("size(event.data.tags) == 2 && event.data.tags.size() == 2");
    MATCH("size(event.data.utf) == 5");  /* code points, not bytes */
    MATCH("size(event.data.nested) == 1 && size([1, 2, 3]) == 3 && 'abc'.size() == 3");
    EVALERR("size(event.data.price) == 1", "size() does not apply to int");
    BADCOMPILE("size(1) == 1", "size() does not apply to int");
    BADCOMPILE("size() == 1", "size() takes 1 argument");
    MATCH("int(event.data.num_str) == 42 && int('-7') == -7 && int(2.9) == 2 && int(-2.9) == -2");
    MATCH("double(event.data.price) == 150.0 && double('2.5') == 2.5");
    MATCH("string(event.data.price) == '150' && string(0.5) == '0.5' && string(true) == 'true'");
    MATCH("string(event.type) == 'widget'");
    MATCH("int(event.data.amount) == 10000"); /* truncates, like CEL */
    EVALERR("int('4x') == 4", "int() cannot parse");
    EVALERR("int(' 4') == 4", "int() cannot parse");
    EVALERR("int(1e19) == 1", "out of range");
    EVALERR("double('x') == 1.0", "double() cannot parse");
    EVALERR("int(event.data.flag) == 0", "int() does not apply to bool");
    EVALERR("string(event.data.nul) == ''", "string() does not apply to null");
    BADCOMPILE("int(true) == 1", "cannot convert bool");
}
END_TEST

START_TEST(arithmetic) {
    MATCH("event.data.price + 50 == 200 && event.data.price - 50 == 100");
    MATCH("event.data.price * 2 == 300 && event.data.price / 4 == 37 && event.data.price % 7 == 3");
    MATCH("event.data.ratio * 2 == 1 && event.data.price / 4.0 == 37.5");
    MATCH("-event.data.price == -150 && -event.data.ratio == -0.5");
    MATCH("'ab' + 'cd' == 'abcd' && [1] + [2] == [1, 2]");
    MATCH("event.type + '!' == 'widget!'");
    /* Lists built at run time from parts of the event. */
    MATCH("[event.type, 'x'][0] == 'widget' && event.data.tags + ['c'] == ['a', 'b', 'c']");
    MATCH("(event.data.items + [])[1].id == 2 && [event.data.nested][0].a.b == 'deep'");
    MATCH("event.type in [event.source, event.type]");
    EVALERR("event.data.price / event.data.zero == 1", "division by zero");
    EVALERR("event.data.price % event.data.zero == 1", "division by zero");
    EVALERR("event.data.big + 1 > 0", "integer overflow");
    EVALERR("event.data.big * 2 > 0", "integer overflow");
    EVALERR("-event.data.big - 2 < 0", "integer overflow");
    EVALERR("event.data.ratio / 0.0 > 1.0", "not a finite number");
    EVALERR("event.data.ratio % 2 == 0", "no operator '%' for double and int");
    EVALERR("event.data.name - 1 == 0", "no operator '-' for string and int");
    EVALERR("event.data.name + 1 == 0", "no operator '+' for string and int");
    EVALERR("-event.data.name == 0", "'-' applied to string");
    BADCOMPILE("1 + 'a' == 1", "no operator '+' for int and string");
    BADCOMPILE("1.5 % 2 == 1", "no operator '%' for double and int");
    BADCOMPILE("true + 1 == 1", "no operator '+' for bool and int");
    BADCOMPILE("-'a' == 1", "'-' applied to string");
}
END_TEST

START_TEST(ternary) {
    MATCH("event.type == 'widget' ? event.data.price > 100 : event.data.price > 1000");
    NOMATCH("event.type == 'gadget' ? true : false");
    /* Only the chosen branch is evaluated. */
    MATCH("true ? true : event.data.missing");
    EVALERR("event.data.missing ? true : false", "no such key");
    EVALERR("event.data.name ? true : false", "condition of '?:' is string");
    BADCOMPILE("1 ? true : false", "condition of '?:' is int");
    BADCOMPILE("true ? 1 : 2", "expression is int, not bool");
    EVALERR("true ? 1 : 'a'", "evaluated to int, not bool"); /* mixed branches: checked at run time */
}
END_TEST

START_TEST(non_bool_results) {
    EVALERR("event.type", "evaluated to string, not bool");
    EVALERR("event.data", "evaluated to map, not bool");
    MATCH("event.data.important");
    NOMATCH("event.data.flag");
    BADCOMPILE("1", "expression is int, not bool");
    BADCOMPILE("'x'", "expression is string, not bool");
    BADCOMPILE("[true]", "expression is list, not bool");
    BADCOMPILE("null", "expression is null, not bool");
    BADCOMPILE("size(event.data)", "expression is int, not bool");
}
END_TEST

START_TEST(refused_constructs) {
    BADCOMPILE("event.data.tags.all(t, t != '')", "macro 'all' is not supported");
    BADCOMPILE("event.data.tags.exists(t, t == 'a')", "macro 'exists' is not supported");
    BADCOMPILE("event.data.tags.exists_one(t, t == 'a')", "macro 'exists_one' is not supported");
    BADCOMPILE("size(event.data.tags.map(t, t + 'x')) == 2", "macro 'map' is not supported");
    BADCOMPILE("size(event.data.tags.filter(t, t == 'a')) == 1", "macro 'filter' is not supported");
    BADCOMPILE("timestamp(event.time) > timestamp('2020-01-01T00:00:00Z')", "function 'timestamp' is not supported");
    BADCOMPILE("type(event) == map", "function 'type' is not supported");
    BADCOMPILE("event.type.lowerAscii() == 'a'", "method 'lowerAscii' is not supported");
    BADCOMPILE("other.type == 'a'", "undeclared reference to 'other'");
    BADCOMPILE("events.type == 'a'", "undeclared reference to 'events'");
    BADCOMPILE("{'a': 1}.a == 1", "map literals are not supported");
    BADCOMPILE("event.?data", "optional field selection is not supported");
    BADCOMPILE("event.type = 'a'", "'=' is not an operator");
    BADCOMPILE("true & false", "'&' is not an operator");
    BADCOMPILE("true | false", "'|' is not an operator");
    BADCOMPILE("if == 1", "'if' is a reserved word");
    BADCOMPILE(".event.type == 'a'", "leading '.' is not supported");
    BADCOMPILE("event.type == 'a' #", "unexpected character '#'");
    BADCOMPILE("1.startsWith == 1", "int has no fields");
    BADCOMPILE("'a'[0] == 'a'", "string cannot be indexed");
}
END_TEST

START_TEST(malformed) {
    BADCOMPILE("", "empty expression");
    BADCOMPILE("   // only a comment", "empty expression");
    BADCOMPILE("event.type ==", "unexpected end of expression");
    BADCOMPILE("event.type == 'a' event.type", "unexpected 'event' after the end");
    BADCOMPILE("(event.type == 'a'", "expected ')'");
    BADCOMPILE("event.type == 'a')", "unexpected ')' after the end");
    BADCOMPILE("[1, 2", "expected ',' or ']'");
    BADCOMPILE("event.data[1", "expected ']'");
    BADCOMPILE("event.", "expected a field name after '.'");
    BADCOMPILE("event.type == \"widget", "unterminated string literal");
    BADCOMPILE("event.type == 'widget", "unterminated string literal");
    BADCOMPILE("event.type == '''widget''", "unterminated string literal");
    BADCOMPILE("event.type == 'a\\", "unterminated string literal");
    BADCOMPILE("event.type == 'a\nb'", "newline in string literal");
    BADCOMPILE("true ? 1", "expected ':'");
    BADCOMPILE("size(1,)", "unexpected ')'");
    BADCOMPILE("&& true", "unexpected '&&'");
    BADCOMPILE("1.5.3 == 1", "invalid number");
    BADCOMPILE("event.type == 'a' \x01", "unexpected byte 0x01");

    /* The message names the column and quotes the expression. */
    char err[256];
    ck_assert_ptr_null(cel_compile("event.type == 'a' && x", err, sizeof(err)));
    ck_assert_str_eq(err, "undeclared reference to 'x' (the only variable is 'event') at column 22 of "
                          "\"event.type == 'a' && x\"");
    /* A small buffer truncates, never overflows; NULL err is fine. */
    char small[8];
    ck_assert_ptr_null(cel_compile("bad bad", small, sizeof(small)));
    ck_assert_uint_eq(strlen(small), 7);
    ck_assert_ptr_null(cel_compile("bad bad", NULL, 0));
    ck_assert_ptr_null(cel_compile(NULL, err, sizeof(err)));
}
END_TEST

START_TEST(hostile) {
    char err[512];
    /* NUL byte inside the expression is refused, not silently cut short. */
    static const char with_nul[] = "event.type == 'a'\0 || true";
    ck_assert_ptr_null(cel_compilen(with_nul, sizeof(with_nul) - 1, err, sizeof(err)));
    ck_assert_msg(strstr(err, "NUL byte in expression at column 18") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "\\x00") != NULL, "control bytes are escaped in messages: %s", err);

    /* Too long. */
    size_t n = CEL_MAX_EXPR_LEN + 1;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "true", 4);
    big[n] = '\0';
    ck_assert_ptr_null(cel_compile(big, err, sizeof(err)));
    ck_assert_msg(strstr(err, "longer than 4096 bytes") != NULL, "%s", err);
    big[n - 1] = '\0'; /* exactly at the limit is fine */
    cel_program *p = cel_compile(big, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    cel_free(p);

    /* Deep nesting of each recursive form is refused cleanly. */
    const char *open[] = {"(", "[", "!", "-", "size(", "event.data.x == 1 ? true : "};
    const char *close[] = {")", "]", "", "", ")", ""};
    for (size_t k = 0; k < sizeof(open) / sizeof(open[0]); k++) {
        char *s = malloc(CEL_MAX_EXPR_LEN + 1);
        size_t len = 0;
        size_t lo = strlen(open[k]), lc = strlen(close[k]);
        size_t reps = (CEL_MAX_EXPR_LEN - 10) / (lo + lc);
        for (size_t i = 0; i < reps; i++, len += lo) memcpy(s + len, open[k], lo);
        memcpy(s + len, "true", 4);
        len += 4;
        for (size_t i = 0; i < reps; i++, len += lc) memcpy(s + len, close[k], lc);
        s[len] = '\0';
        ck_assert_ptr_null(cel_compile(s, err, sizeof(err)));
        ck_assert_msg(strstr(err, "nests too deeply") != NULL, "%s: %s", open[k], err);
        free(s);
    }
    /* Long left-associative chains and member chains grow the tree. */
    {
        char *s = malloc(CEL_MAX_EXPR_LEN + 1);
        size_t len = 0;
        memcpy(s, "1", 1), len = 1;
        while (len + 4 < 1000) memcpy(s + len, " + 1", 4), len += 4;
        memcpy(s + len, " > 0", 5);
        ck_assert_ptr_null(cel_compile(s, err, sizeof(err)));
        ck_assert_msg(strstr(err, "nests too deeply") != NULL, "%s", err);
        len = 5;
        memcpy(s, "event", 5);
        while (len + 2 < 1000) memcpy(s + len, ".a", 2), len += 2;
        s[len] = '\0';
        ck_assert_ptr_null(cel_compile(s, err, sizeof(err)));
        ck_assert_msg(strstr(err, "nests too deeply") != NULL, "%s", err);
        free(s);
    }
    /* Nesting below the limit works. */
    MATCH("((((((((((((((((((((true))))))))))))))))))))");
    MATCH("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!true");

    /* Wide is fine: many list elements do not nest. */
    {
        char *s = malloc(CEL_MAX_EXPR_LEN + 1);
        size_t len = 0;
        len += (size_t)sprintf(s, "150 in [");
        while (len < CEL_MAX_EXPR_LEN - 20) len += (size_t)sprintf(s + len, "1,");
        sprintf(s + len, "150]");
        p = cel_compile(s, err, sizeof(err));
        ck_assert_msg(p != NULL, "%s", err);
        cel_free(p);
        free(s);
    }
    free(big);

    /* NULL arguments to evaluation. */
    p = cel_compile("true", err, sizeof(err));
    ck_assert_int_eq(cel_eval_bool(p, NULL, err, sizeof(err)), -1);
    ck_assert_int_eq(cel_eval_bool(NULL, event, err, sizeof(err)), -1);
    ck_assert_str_eq(cel_source(p), "true");
    cel_free(p);
    cel_free(NULL);
}
END_TEST

START_TEST(events_of_other_shapes) {
    char err[256];
    cel_program *p = cel_compile("event.data.x == 1", err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    /* data that is a plain string (non-JSON payload): an evaluation error. */
    json_t *e = json_pack("{s:s, s:s}", "type", "t", "data", "hello");
    ck_assert_int_eq(cel_eval_bool(p, e, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "string has no field 'x'") != NULL, "%s", err);
    json_decref(e);
    /* no data at all. */
    e = json_pack("{s:s}", "type", "t");
    ck_assert_int_eq(cel_eval_bool(p, e, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "no such key 'data'") != NULL, "%s", err);
    json_decref(e);
    /* a match clears err. */
    e = json_pack("{s:{s:i}}", "data", "x", 1);
    ck_assert_int_eq(cel_eval_bool(p, e, err, sizeof(err)), 1);
    ck_assert_str_eq(err, "");
    json_decref(e);
    /* A program is reusable across events. */
    e = json_pack("{s:{s:f}}", "data", "x", 1.0);
    ck_assert_int_eq(cel_eval_bool(p, e, err, sizeof(err)), 1);
    ck_assert_int_eq(cel_eval_bool(p, e, NULL, 0), 1);
    json_decref(e);
    cel_free(p);
}
END_TEST

/* A compiled program is shared by the delivery threads of a subscription. */
static void *eval_many(void *arg) {
    const cel_program *p = arg;
    char err[256];
    long ok = 0;
    for (int i = 0; i < 2000; i++) ok += cel_eval_bool(p, event, err, sizeof(err)) == 1;
    return (void *)ok;
}

START_TEST(concurrent_evaluation) {
    char err[256];
    cel_program *p = cel_compile("event.source.matches('^che+ck') && event.data.tags[1] in ['b'] && "
                                 "event.type.matches(event.data.k == 'v' ? 'dg' : 'x')",
                                 err, sizeof(err));
    ck_assert_msg(p != NULL, "%s", err);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, eval_many, p), 0);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        ck_assert_int_eq((long)ok, 2000);
    }
    cel_free(p);
}
END_TEST

START_TEST(comments_and_messages) {
    MATCH("event.type == 'widget' // a trailing comment");
    MATCH("// leading comment\nevent.type == 'widget'");
    MATCH("event.type == '// not a comment' || true");
    /* Evaluation errors name the column of the failing part. */
    EVALERR("event.type == 'widget' && event.data.nope == 1", "no such key 'nope' (column 38)");
}
END_TEST

/* ---- fuzz corpus replay --------------------------------------------------- */

static size_t replay(const unsigned char *buf, size_t len) {
    size_t runs = 0;
    unsigned char *m = malloc(len ? len : 1);
    /* The input itself, every prefix, and single-byte mutations. */
    LLVMFuzzerTestOneInput(buf, len), runs++;
    for (size_t i = 0; i < len; i++) LLVMFuzzerTestOneInput(buf, i), runs++;
    static const unsigned char subst[] = {'\0', '\\', '\'', '"', '(', ')', '[', '.', '!', 0xff, '9'};
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            memcpy(m, buf, len);
            m[i] = subst[k];
            LLVMFuzzerTestOneInput(m, len), runs++;
        }
    }
    free(m);
    return runs;
}

START_TEST(corpus_replay) {
    DIR *d = opendir(CEL_CORPUS_DIR);
    ck_assert_msg(d != NULL, "cannot open %s", CEL_CORPUS_DIR);
    struct dirent *de;
    size_t files = 0, runs = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", CEL_CORPUS_DIR, de->d_name);
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        unsigned char buf[CEL_MAX_EXPR_LEN + 16];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        runs += replay(buf, len);
        files++;
    }
    closedir(d);
    ck_assert_uint_ge(files, 10);
    ck_assert_uint_gt(runs, 1000);
}
END_TEST

static Suite *cel_suite(void) {
    Suite *s = suite_create("cel");
    TCase *tc = tcase_create("cel");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, dapr_doc_examples);
    tcase_add_test(tc, member_access_and_index);
    tcase_add_test(tc, literals);
    tcase_add_test(tc, comparisons);
    tcase_add_test(tc, logic_and_short_circuit);
    tcase_add_test(tc, precedence);
    tcase_add_test(tc, membership);
    tcase_add_test(tc, has_macro);
    tcase_add_test(tc, string_functions);
    tcase_add_test(tc, size_and_conversions);
    tcase_add_test(tc, arithmetic);
    tcase_add_test(tc, ternary);
    tcase_add_test(tc, non_bool_results);
    tcase_add_test(tc, refused_constructs);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, hostile);
    tcase_add_test(tc, events_of_other_shapes);
    tcase_add_test(tc, concurrent_evaluation);
    tcase_add_test(tc, comments_and_messages);
    tcase_add_test(tc, corpus_replay);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(cel_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
