/*
 * cel.c - a small evaluator for the CEL subset used by Dapr pub/sub routing
 * rules.  See cel.h for what is supported and why the rest is refused.
 *
 * Shape: a hand-written lexer, a recursive-descent parser that builds a tree
 * of cel_node and does a light static type check (so that "1 + 'a'" or a
 * rule that can never be a bool is refused at load time), and a tree-walking
 * evaluator whose values are jansson references.  Using json_t for values
 * keeps one representation for what comes from the event and what the
 * expression computes, and makes lists and maps free.
 *
 * Grammar (CEL's, minus what we do not support):
 *   expr    = or ["?" or ":" expr]
 *   or      = and {"||" and}
 *   and     = rel {"&&" rel}
 *   rel     = add {("=="|"!="|"<"|"<="|">"|">="|"in") add}
 *   add     = mul {("+"|"-") mul}
 *   mul     = unary {("*"|"/"|"%") unary}
 *   unary   = member | "!" {"!"} member | "-" {"-"} member
 *   member  = primary {"." IDENT ["(" args ")"] | "[" expr "]"}
 *   primary = IDENT ["(" args ")"] | "(" expr ")" | "[" [args] [","] "]"
 *           | literal
 */
#include "config.h"

#include "cel.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tree ------------------------------------------------------------- */

enum node_kind {
    N_LIT,    /* lit */
    N_EVENT,  /* the `event` variable */
    N_LIST,   /* kids: elements (non-constant list) */
    N_SELECT, /* kids[0].name */
    N_HAS,    /* has(kids[0].name) */
    N_INDEX,  /* kids[0][kids[1]] */
    N_NOT,
    N_NEG,
    N_AND, /* n-ary so that long chains do not nest deeply */
    N_OR,
    N_COND,  /* kids[0] ? kids[1] : kids[2] */
    N_BINOP, /* op: an OP_* */
    N_CALL   /* op: an F_*; kids[0] is the receiver or first argument */
};

enum binop { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD };

enum func { F_SIZE, F_INT, F_DOUBLE, F_STRING, F_STARTS, F_ENDS, F_CONTAINS, F_MATCHES };

/* Static types, for the compile-time check.  DYN is "known only at run
 * time" (anything read from the event) and is accepted everywhere. */
enum stype { ST_DYN, ST_BOOL, ST_INT, ST_DOUBLE, ST_STRING, ST_NULL, ST_LIST };

typedef struct cel_node {
    enum node_kind kind;
    int op;
    enum stype type;
    int depth;
    size_t pos; /* byte offset in the source, for messages */
    json_t *lit;
    char *name;
    regex_t *re; /* matches() with a constant pattern: compiled once */
    struct cel_node **kids;
    size_t nkids;
} cel_node;

struct cel_program {
    char *src;
    cel_node *root;
};

static void node_free(cel_node *n) {
    if (!n) return;
    for (size_t i = 0; i < n->nkids; i++) node_free(n->kids[i]);
    free(n->kids);
    json_decref(n->lit);
    free(n->name);
    if (n->re) {
        regfree(n->re);
        free(n->re);
    }
    free(n);
}

/* ---- lexer ------------------------------------------------------------ */

enum tok_kind {
    T_EOF, T_IDENT, T_INT, T_DOUBLE, T_STRING, T_TRUE, T_FALSE, T_NULL, T_IN,
    T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_AND, T_OR, T_NOT, T_QUEST, T_COLON,
    T_DOT, T_COMMA, T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK,
    T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT
};

typedef struct {
    enum tok_kind kind;
    size_t pos, len;
    int64_t ival;
    double dval;
    json_t *sval; /* T_STRING: owned until taken by the parser */
} token;

typedef struct {
    const char *src;
    size_t len, pos;
    token tok;
    int depth;
    int failed;
    char *err;
    size_t errlen;
} parser;

/* Records the first error only: later ones are consequences of it. */
static void perror_at(parser *p, size_t pos, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    if (!p->err || !p->errlen) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Quote the expression with control bytes escaped so that the message
     * stays one printable line whatever the input. */
    char quoted[160];
    size_t q = 0, i;
    for (i = 0; i < p->len && q + 8 < sizeof(quoted); i++) {
        unsigned char c = (unsigned char)p->src[i];
        if (c < 0x20 || c == 0x7f) q += (size_t)snprintf(quoted + q, sizeof(quoted) - q, "\\x%02x", c);
        else quoted[q++] = (char)c;
    }
    quoted[q] = '\0';
    int cut = i < p->len;
    snprintf(p->err, p->errlen, "%s at column %zu of \"%s%s\"", msg, pos + 1, quoted, cut ? "..." : "");
}

static int is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }
static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static int sbuf_put(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return -1;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return 0;
}

static int sbuf_put_utf8(sbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sbuf_put(b, u, n);
}

/* Reads one escape sequence after the backslash at p->pos (CEL's set:
 * \a \b \f \n \r \t \v \\ \' \" \` \? \xHH \uHHHH \UHHHHHHHH \ooo). */
static int lex_escape(parser *p, sbuf *b) {
    size_t start = p->pos;
    p->pos++; /* the backslash */
    if (p->pos >= p->len) {
        perror_at(p, start, "unterminated string literal");
        return -1;
    }
    char c = p->src[p->pos++];
    const char *simple = "a\ab\bf\fn\nr\rt\tv\v\\\\''\"\"``??";
    for (const char *s = simple; *s; s += 2)
        if (c == s[0]) return sbuf_put(b, &s[1], 1);
    int ndig = 0, base = 16;
    uint32_t cp = 0;
    if (c == 'x' || c == 'X') ndig = 2;
    else if (c == 'u') ndig = 4;
    else if (c == 'U') ndig = 8;
    else if (c >= '0' && c <= '3') {
        base = 8;
        ndig = 2;
        cp = (uint32_t)(c - '0');
    } else {
        perror_at(p, start, "invalid escape sequence '\\%c' in string literal", c >= 0x20 && c < 0x7f ? c : '?');
        return -1;
    }
    for (int i = 0; i < ndig; i++) {
        int v = p->pos < p->len ? hexval((unsigned char)p->src[p->pos]) : -1;
        if (v < 0 || v >= base) {
            perror_at(p, start, "invalid escape sequence in string literal");
            return -1;
        }
        cp = cp * (uint32_t)base + (uint32_t)v;
        p->pos++;
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        perror_at(p, start, "escape sequence is not a valid Unicode code point");
        return -1;
    }
    return sbuf_put_utf8(b, cp);
}

static int lex_string(parser *p, int raw) {
    size_t start = p->tok.pos;
    char q = p->src[p->pos];
    int triple = p->pos + 2 < p->len && p->src[p->pos + 1] == q && p->src[p->pos + 2] == q;
    p->pos += triple ? 3 : 1;
    sbuf b = {0};
    for (;;) {
        if (p->pos >= p->len) {
            perror_at(p, start, "unterminated string literal");
            goto fail;
        }
        char c = p->src[p->pos];
        if (c == q && (!triple || (p->pos + 2 < p->len && p->src[p->pos + 1] == q && p->src[p->pos + 2] == q))) {
            p->pos += triple ? 3 : 1;
            break;
        }
        if (!triple && (c == '\n' || c == '\r')) {
            perror_at(p, start, "newline in string literal (use \\n or a triple-quoted string)");
            goto fail;
        }
        if (c == '\\' && !raw) {
            if (lex_escape(p, &b) < 0) goto fail;
            continue;
        }
        if (sbuf_put(&b, &c, 1) < 0) goto oom;
        p->pos++;
    }
    p->tok.kind = T_STRING;
    p->tok.sval = json_stringn(b.buf ? b.buf : "", b.len);
    if (!p->tok.sval) {
        /* json_stringn only fails on bad UTF-8 (or out of memory). */
        perror_at(p, start, "string literal is not valid UTF-8");
        goto fail;
    }
    free(b.buf);
    return 0;
oom:
    perror_at(p, start, "out of memory");
fail:
    free(b.buf);
    return -1;
}

static int lex_number(parser *p) {
    size_t start = p->pos;
    const char *s = p->src;
    size_t i = p->pos;
    int is_double = 0;
    if (s[i] == '0' && i + 1 < p->len && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        i += 2;
        uint64_t v = 0;
        size_t d0 = i;
        while (i < p->len && hexval((unsigned char)s[i]) >= 0) {
            if (v > (uint64_t)INT64_MAX / 16) {
                perror_at(p, start, "integer literal out of range");
                return -1;
            }
            v = v * 16 + (uint64_t)hexval((unsigned char)s[i++]);
        }
        if (i == d0 || v > (uint64_t)INT64_MAX) {
            perror_at(p, start, i == d0 ? "invalid hex literal" : "integer literal out of range");
            return -1;
        }
        p->tok.kind = T_INT;
        p->tok.ival = (int64_t)v;
    } else {
        while (i < p->len && is_digit(s[i])) i++;
        if (i + 1 < p->len && s[i] == '.' && is_digit(s[i + 1])) {
            is_double = 1;
            i++;
            while (i < p->len && is_digit(s[i])) i++;
        }
        if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
            size_t j = i + 1;
            if (j < p->len && (s[j] == '+' || s[j] == '-')) j++;
            if (j < p->len && is_digit(s[j])) {
                is_double = 1;
                i = j;
                while (i < p->len && is_digit(s[i])) i++;
            }
        }
        /* The source is a NUL-terminated copy, so strto* stop in time; we
         * check they consumed exactly what the grammar says. */
        char *end;
        errno = 0;
        if (is_double) {
            double d = strtod(s + start, &end);
            if ((size_t)(end - s) != i || !isfinite(d)) {
                perror_at(p, start, "invalid double literal");
                return -1;
            }
            p->tok.kind = T_DOUBLE;
            p->tok.dval = d;
        } else {
            long long v = strtoll(s + start, &end, 10);
            if ((size_t)(end - s) != i || errno == ERANGE) {
                perror_at(p, start, "integer literal out of range");
                return -1;
            }
            p->tok.kind = T_INT;
            p->tok.ival = v;
        }
    }
    if (i < p->len && (s[i] == 'u' || s[i] == 'U')) {
        perror_at(p, start, "unsigned integer literals are not supported");
        return -1;
    }
    if (i < p->len && (is_ident_char(s[i]) || s[i] == '.') && !(s[i] == '.' && !is_double)) {
        perror_at(p, start, "invalid number");
        return -1;
    }
    p->pos = i;
    return 0;
}

/* Advances to the next token.  Returns -1 (with the error recorded) on a
 * lexical error. */
static int next(parser *p) {
    json_decref(p->tok.sval);
    p->tok.sval = NULL;
    if (p->failed) return -1;
    for (;;) {
        while (p->pos < p->len && strchr(" \t\n\r\f\v", p->src[p->pos]) && p->src[p->pos]) p->pos++;
        if (p->pos + 1 < p->len && p->src[p->pos] == '/' && p->src[p->pos + 1] == '/') {
            while (p->pos < p->len && p->src[p->pos] != '\n') p->pos++;
            continue;
        }
        break;
    }
    token *t = &p->tok;
    t->pos = p->pos;
    if (p->pos >= p->len) {
        t->kind = T_EOF;
        return 0;
    }
    const char *s = p->src + p->pos;
    size_t rest = p->len - p->pos;
    unsigned char c = (unsigned char)s[0];

    /* String prefixes: r"raw", b"bytes" (refused), rb/br. */
    if (c == 'r' || c == 'R' || c == 'b' || c == 'B') {
        size_t k = 1;
        int raw = (c == 'r' || c == 'R'), bytes = (c == 'b' || c == 'B');
        if (rest > 2 && strchr("rRbB", s[1]) && s[1] && (s[2] == '"' || s[2] == '\'')) {
            raw |= (s[1] == 'r' || s[1] == 'R');
            bytes |= (s[1] == 'b' || s[1] == 'B');
            k = 2;
        }
        if (rest > k && (s[k] == '"' || s[k] == '\'')) {
            if (bytes) {
                perror_at(p, p->pos, "bytes literals are not supported");
                return -1;
            }
            p->pos += k;
            int rc = lex_string(p, raw);
            t->len = p->pos - t->pos;
            return rc;
        }
    }
    if (c == '"' || c == '\'' || is_digit(c) || (c == '.' && rest > 1 && is_digit(s[1]))) {
        int rc = is_digit(c) || c == '.' ? lex_number(p) : lex_string(p, 0);
        t->len = p->pos - t->pos;
        return rc;
    }
    if (is_ident_start(c)) {
        size_t n = 1;
        while (n < rest && is_ident_char(s[n])) n++;
        t->len = n;
        p->pos += n;
        t->kind = T_IDENT;
        if (n == 4 && !memcmp(s, "true", 4)) t->kind = T_TRUE;
        else if (n == 5 && !memcmp(s, "false", 5)) t->kind = T_FALSE;
        else if (n == 4 && !memcmp(s, "null", 4)) t->kind = T_NULL;
        else if (n == 2 && !memcmp(s, "in", 2)) t->kind = T_IN;
        return 0;
    }
    static const struct {
        const char *text;
        enum tok_kind kind;
    } ops[] = {
        {"==", T_EQ}, {"!=", T_NE}, {"<=", T_LE}, {">=", T_GE}, {"&&", T_AND}, {"||", T_OR},
        {"<", T_LT}, {">", T_GT}, {"!", T_NOT}, {"?", T_QUEST}, {":", T_COLON}, {".", T_DOT},
        {",", T_COMMA}, {"(", T_LPAREN}, {")", T_RPAREN}, {"[", T_LBRACK}, {"]", T_RBRACK},
        {"+", T_PLUS}, {"-", T_MINUS}, {"*", T_STAR}, {"/", T_SLASH}, {"%", T_PERCENT},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t n = strlen(ops[i].text);
        if (rest >= n && !memcmp(s, ops[i].text, n)) {
            /* "?." and ".?" are CEL's optional field selection. */
            if ((ops[i].kind == T_QUEST && rest > 1 && s[1] == '.') || (ops[i].kind == T_DOT && rest > 1 && s[1] == '?')) {
                perror_at(p, p->pos, "optional field selection is not supported");
                return -1;
            }
            t->kind = ops[i].kind;
            t->len = n;
            p->pos += n;
            return 0;
        }
    }
    if (c == '=') perror_at(p, p->pos, "'=' is not an operator (did you mean '=='?)");
    else if (c == '&' || c == '|') perror_at(p, p->pos, "'%c' is not an operator (did you mean '%c%c'?)", c, c, c);
    else if (c == '{' || c == '}') perror_at(p, p->pos, "map literals are not supported");
    else if (c == '\0') perror_at(p, p->pos, "NUL byte in expression");
    else if (c >= 0x20 && c < 0x7f) perror_at(p, p->pos, "unexpected character '%c'", c);
    else perror_at(p, p->pos, "unexpected byte 0x%02x", c);
    return -1;
}

/* ---- parser ----------------------------------------------------------- */

static const char *stype_name(enum stype t) {
    static const char *names[] = {"dyn", "bool", "int", "double", "string", "null", "list"};
    return names[t];
}

static int is_num_type(enum stype t) { return t == ST_INT || t == ST_DOUBLE; }

static cel_node *mknode(parser *p, enum node_kind kind, size_t pos, size_t nkids, cel_node **kids) {
    cel_node *n = calloc(1, sizeof(*n));
    if (!n || (nkids && !(n->kids = malloc(nkids * sizeof(*kids))))) {
        free(n);
        perror_at(p, pos, "out of memory");
        for (size_t i = 0; i < nkids; i++) node_free(kids[i]);
        return NULL;
    }
    n->kind = kind;
    n->pos = pos;
    n->nkids = nkids;
    int depth = 0;
    for (size_t i = 0; i < nkids; i++) {
        n->kids[i] = kids[i];
        if (kids[i]->depth > depth) depth = kids[i]->depth;
    }
    n->depth = depth + 1;
    /* The tree depth bounds the evaluator's recursion. */
    if (n->depth > CEL_MAX_DEPTH) {
        perror_at(p, pos, "expression nests too deeply (limit %d)", CEL_MAX_DEPTH);
        node_free(n);
        return NULL;
    }
    return n;
}

static cel_node *mk1(parser *p, enum node_kind kind, size_t pos, cel_node *a) {
    return mknode(p, kind, pos, 1, &a);
}

static cel_node *mk2(parser *p, enum node_kind kind, int op, size_t pos, cel_node *a, cel_node *b) {
    cel_node *kids[2] = {a, b};
    cel_node *n = mknode(p, kind, pos, 2, kids);
    if (n) n->op = op;
    return n;
}

static cel_node *mklit(parser *p, size_t pos, json_t *v, enum stype t) {
    if (!v) {
        perror_at(p, pos, "out of memory");
        return NULL;
    }
    cel_node *n = mknode(p, N_LIT, pos, 0, NULL);
    if (!n) {
        json_decref(v);
        return NULL;
    }
    n->lit = v;
    n->type = t;
    return n;
}

static int expect(parser *p, enum tok_kind k, const char *what) {
    if (p->tok.kind != k) {
        perror_at(p, p->tok.pos, "expected %s", what);
        return -1;
    }
    return next(p);
}

static cel_node *parse_expr(parser *p);

/* Node arrays for lists and call arguments. */
typedef struct {
    cel_node **v;
    size_t n, cap;
} nodevec;

static void nodevec_free(nodevec *nv) {
    for (size_t i = 0; i < nv->n; i++) node_free(nv->v[i]);
    free(nv->v);
}

static int nodevec_push(parser *p, nodevec *nv, cel_node *n) {
    if (nv->n == nv->cap) {
        size_t cap = nv->cap ? nv->cap * 2 : 4;
        cel_node **v = realloc(nv->v, cap * sizeof(*v));
        if (!v) {
            node_free(n);
            perror_at(p, p->tok.pos, "out of memory");
            return -1;
        }
        nv->v = v;
        nv->cap = cap;
    }
    nv->v[nv->n++] = n;
    return 0;
}

/* Parses "expr, expr, ... <close>" (the opening bracket is consumed). */
static int parse_args(parser *p, nodevec *nv, enum tok_kind close, int allow_trailing_comma) {
    if (p->tok.kind == close) return next(p);
    for (;;) {
        cel_node *e = parse_expr(p);
        if (!e || nodevec_push(p, nv, e) < 0) return -1;
        if (p->tok.kind == T_COMMA) {
            if (next(p) < 0) return -1;
            if (allow_trailing_comma && p->tok.kind == close) return next(p);
            continue;
        }
        return expect(p, close, close == T_RPAREN ? "',' or ')'" : "',' or ']'");
    }
}

/* Refuses, at load time, POSIX-valid patterns that mean something else in
 * RE2 (which is what Dapr's CEL uses) rather than silently matching
 * differently. */
static const char *re2_only_syntax(const char *re) {
    for (size_t i = 0; re[i]; i++) {
        if (re[i] == '\\') {
            if (re[i + 1] && strchr("dDpPQEzAC", re[i + 1])) return "RE2 escape sequences such as \\d";
            if (re[i + 1]) i++;
        } else if (re[i] == '[') {
            /* Skip the bracket expression: '?' inside it is a literal. */
            size_t j = i + 1;
            if (re[j] == '^') j++;
            if (re[j] == ']') j++;
            while (re[j] && re[j] != ']') j++;
            if (!re[j]) return NULL; /* regcomp reports it */
            i = j;
        } else if (re[i] == '(' && re[i + 1] == '?') {
            return "RE2 groups and flags such as (?i) or (?:...)";
        } else if (strchr("*+?}", re[i]) && re[i + 1] == '?') {
            return "non-greedy quantifiers";
        }
    }
    return NULL;
}

static int compile_regex(const char *pattern, regex_t *re, char *msg, size_t msglen) {
    const char *bad = re2_only_syntax(pattern);
    if (bad) {
        snprintf(msg, msglen, "%s are not supported (matches() uses POSIX extended regular expressions, not RE2)", bad);
        return -1;
    }
    int rc = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, re, why, sizeof(why));
        snprintf(msg, msglen, "invalid regular expression: %s", why);
        return -1;
    }
    return 0;
}

static cel_node *mkcall(parser *p, int fn, size_t pos, nodevec *args, enum stype type) {
    cel_node *n = mknode(p, N_CALL, pos, args->n, args->v);
    free(args->v);
    args->v = NULL;
    args->n = 0;
    if (!n) return NULL;
    n->op = fn;
    n->type = type;
    cel_node *a = n->kids[0];
    switch (fn) {
    case F_SIZE:
        if (a->type != ST_DYN && a->type != ST_STRING && a->type != ST_LIST) {
            perror_at(p, pos, "size() does not apply to %s", stype_name(a->type));
            goto fail;
        }
        break;
    case F_INT:
    case F_DOUBLE:
        if (a->type == ST_BOOL || a->type == ST_NULL || a->type == ST_LIST) {
            perror_at(p, pos, "cannot convert %s to a number", stype_name(a->type));
            goto fail;
        }
        break;
    case F_STRING:
        if (a->type == ST_NULL || a->type == ST_LIST) {
            perror_at(p, pos, "cannot convert %s to a string", stype_name(a->type));
            goto fail;
        }
        break;
    default: /* the string functions */
        for (size_t i = 0; i < 2; i++) {
            if (n->kids[i]->type != ST_DYN && n->kids[i]->type != ST_STRING) {
                perror_at(p, n->kids[i]->pos, "string function applied to %s", stype_name(n->kids[i]->type));
                goto fail;
            }
        }
        if (fn == F_MATCHES && n->kids[1]->kind == N_LIT) {
            const char *pat = json_string_value(n->kids[1]->lit);
            char msg[200];
            if (strlen(pat) != json_string_length(n->kids[1]->lit)) {
                perror_at(p, n->kids[1]->pos, "NUL byte in regular expression");
                goto fail;
            }
            if (!(n->re = malloc(sizeof(*n->re)))) {
                perror_at(p, pos, "out of memory");
                goto fail;
            }
            if (compile_regex(pat, n->re, msg, sizeof(msg)) < 0) {
                free(n->re);
                n->re = NULL;
                perror_at(p, n->kids[1]->pos, "%s", msg);
                goto fail;
            }
        }
    }
    return n;
fail:
    node_free(n);
    return NULL;
}

static int name_is(const char *name, const char *s) { return strcmp(name, s) == 0; }

static int is_macro(const char *name) {
    return name_is(name, "all") || name_is(name, "exists") || name_is(name, "exists_one") || name_is(name, "map") ||
           name_is(name, "filter");
}

/* A call: `target.name(args)` when target is not NULL, else `name(args)`. */
static cel_node *parse_call(parser *p, const char *name, size_t pos, cel_node *target) {
    nodevec args = {0};
    if (target && nodevec_push(p, &args, target) < 0) return NULL;
    /* Before the arguments, which would name the macro's own variable. */
    if (is_macro(name)) {
        perror_at(p, pos, "macro '%s' is not supported", name);
        goto fail;
    }
    if (next(p) < 0 || parse_args(p, &args, T_RPAREN, 0) < 0) goto fail;
    size_t given = args.n - (target ? 1 : 0);
    int fn = -1;
    size_t want = 1;
    enum stype type = ST_BOOL;

    if (!target && name_is(name, "has")) {
        if (given != 1 || args.v[0]->kind != N_SELECT) {
            perror_at(p, pos, "has() takes one field selection, such as has(event.data.x)");
            goto fail;
        }
        /* Re-label the selection: has() tests for the field instead of
         * reading it. */
        cel_node *sel = args.v[0];
        free(args.v);
        sel->kind = N_HAS;
        sel->type = ST_BOOL;
        return sel;
    }
    if (target) {
        if (name_is(name, "startsWith")) fn = F_STARTS;
        else if (name_is(name, "endsWith")) fn = F_ENDS;
        else if (name_is(name, "contains")) fn = F_CONTAINS;
        else if (name_is(name, "matches")) fn = F_MATCHES;
        else if (name_is(name, "size")) fn = F_SIZE, want = 0, type = ST_INT;
        else {
            perror_at(p, pos, "method '%s' is not supported", name);
            goto fail;
        }
    } else {
        if (name_is(name, "size")) fn = F_SIZE, type = ST_INT;
        else if (name_is(name, "int")) fn = F_INT, type = ST_INT;
        else if (name_is(name, "double")) fn = F_DOUBLE, type = ST_DOUBLE;
        else if (name_is(name, "string")) fn = F_STRING, type = ST_STRING;
        else if (name_is(name, "matches")) fn = F_MATCHES, want = 2;
        else {
            perror_at(p, pos, "function '%s' is not supported", name);
            goto fail;
        }
    }
    if (given != want) {
        perror_at(p, pos, "%s() takes %zu argument%s", name, want, want == 1 ? "" : "s");
        goto fail;
    }
    return mkcall(p, fn, pos, &args, type);
fail:
    nodevec_free(&args);
    return NULL;
}

static char *ident_dup(parser *p) {
    char *s = malloc(p->tok.len + 1);
    if (!s) {
        perror_at(p, p->tok.pos, "out of memory");
        return NULL;
    }
    memcpy(s, p->src + p->tok.pos, p->tok.len);
    s[p->tok.len] = '\0';
    return s;
}

static int is_reserved(const char *s) {
    static const char *words[] = {"as", "break", "const", "continue", "else", "for", "function", "if", "import",
                                  "let", "loop", "package", "namespace", "return", "var", "void", "while"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (!strcmp(s, words[i])) return 1;
    return 0;
}

static cel_node *parse_list(parser *p) {
    size_t pos = p->tok.pos;
    nodevec elems = {0};
    if (next(p) < 0 || parse_args(p, &elems, T_RBRACK, 1) < 0) {
        nodevec_free(&elems);
        return NULL;
    }
    /* A list of constants becomes one constant, so `x in [...]` does not
     * rebuild the list at every evaluation. */
    int constant = 1;
    for (size_t i = 0; i < elems.n; i++) constant &= elems.v[i]->kind == N_LIT;
    if (constant) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < elems.n; i++)
            if (json_array_append(arr, elems.v[i]->lit) < 0) {
                json_decref(arr);
                arr = NULL;
            }
        nodevec_free(&elems);
        return mklit(p, pos, arr, ST_LIST);
    }
    cel_node *n = mknode(p, N_LIST, pos, elems.n, elems.v);
    free(elems.v);
    if (n) n->type = ST_LIST;
    return n;
}

static cel_node *parse_primary(parser *p) {
    token *t = &p->tok;
    size_t pos = t->pos;
    cel_node *n;
    switch (t->kind) {
    case T_INT:
        n = mklit(p, pos, json_integer(t->ival), ST_INT);
        break;
    case T_DOUBLE:
        n = mklit(p, pos, json_real(t->dval), ST_DOUBLE);
        break;
    case T_STRING:
        n = mklit(p, pos, t->sval, ST_STRING);
        t->sval = NULL;
        break;
    case T_TRUE:
        n = mklit(p, pos, json_true(), ST_BOOL);
        break;
    case T_FALSE:
        n = mklit(p, pos, json_false(), ST_BOOL);
        break;
    case T_NULL:
        n = mklit(p, pos, json_null(), ST_NULL);
        break;
    case T_LBRACK:
        return parse_list(p);
    case T_LPAREN:
        if (next(p) < 0 || !(n = parse_expr(p))) return NULL;
        if (expect(p, T_RPAREN, "')'") < 0) {
            node_free(n);
            return NULL;
        }
        return n;
    case T_IDENT: {
        char *name = ident_dup(p);
        if (!name || next(p) < 0) {
            free(name);
            return NULL;
        }
        if (p->tok.kind == T_LPAREN) n = parse_call(p, name, pos, NULL);
        else if (name_is(name, "event")) n = mknode(p, N_EVENT, pos, 0, NULL);
        else if (is_reserved(name)) {
            perror_at(p, pos, "'%s' is a reserved word", name);
            n = NULL;
        } else {
            perror_at(p, pos, "undeclared reference to '%s' (the only variable is 'event')", name);
            n = NULL;
        }
        free(name);
        return n;
    }
    case T_EOF:
        perror_at(p, pos, "unexpected end of expression");
        return NULL;
    case T_DOT:
        perror_at(p, pos, "leading '.' is not supported");
        return NULL;
    default:
        perror_at(p, pos, "unexpected '%.*s'", (int)t->len, p->src + pos);
        return NULL;
    }
    if (!n || next(p) < 0) {
        node_free(n);
        return NULL;
    }
    return n;
}

static cel_node *parse_member(parser *p) {
    cel_node *n = parse_primary(p);
    while (n) {
        size_t pos = p->tok.pos;
        if (p->tok.kind == T_DOT) {
            if (next(p) < 0) break;
            if (p->tok.kind != T_IDENT && p->tok.kind != T_IN && p->tok.kind != T_TRUE && p->tok.kind != T_FALSE &&
                p->tok.kind != T_NULL) {
                perror_at(p, p->tok.pos, "expected a field name after '.'");
                break;
            }
            char *name = ident_dup(p);
            if (!name || next(p) < 0) {
                free(name);
                break;
            }
            if (p->tok.kind == T_LPAREN) {
                n = parse_call(p, name, pos + 1, n);
                free(name);
                continue;
            }
            if (n->type != ST_DYN) {
                perror_at(p, pos, "%s has no fields", stype_name(n->type));
                free(name);
                break;
            }
            cel_node *sel = mk1(p, N_SELECT, pos + 1, n);
            if (!sel) {
                free(name);
                return NULL;
            }
            sel->name = name;
            n = sel;
        } else if (p->tok.kind == T_LBRACK) {
            if (n->type != ST_DYN && n->type != ST_LIST) {
                perror_at(p, pos, "%s cannot be indexed", stype_name(n->type));
                break;
            }
            cel_node *idx;
            if (next(p) < 0 || !(idx = parse_expr(p))) break;
            if (expect(p, T_RBRACK, "']'") < 0) {
                node_free(idx);
                break;
            }
            n = mk2(p, N_INDEX, 0, pos, n, idx);
        } else {
            return n;
        }
    }
    node_free(n);
    return NULL;
}

static cel_node *parse_unary(parser *p) {
    token *t = &p->tok;
    if (t->kind != T_NOT && t->kind != T_MINUS) return parse_member(p);
    enum tok_kind k = t->kind;
    size_t pos = t->pos;
    if (next(p) < 0) return NULL;
    /* "!!!!...x" recurses before any node exists to check the depth of. */
    if (p->depth + 1 > CEL_MAX_DEPTH) {
        perror_at(p, pos, "expression nests too deeply (limit %d)", CEL_MAX_DEPTH);
        return NULL;
    }
    /* -<number> is a negative literal (also keeps "-1" a constant). */
    if (k == T_MINUS && (t->kind == T_INT || t->kind == T_DOUBLE)) {
        size_t save = p->pos;
        int looks_member = 0;
        while (save < p->len && strchr(" \t\r\n", p->src[save]) && p->src[save]) save++;
        looks_member = save < p->len && (p->src[save] == '.' || p->src[save] == '[');
        if (!looks_member) {
            cel_node *n = t->kind == T_INT ? mklit(p, pos, json_integer(-t->ival), ST_INT)
                                           : mklit(p, pos, json_real(-t->dval), ST_DOUBLE);
            if (n && next(p) < 0) {
                node_free(n);
                return NULL;
            }
            return n;
        }
    }
    p->depth++;
    cel_node *a = parse_unary(p);
    p->depth--;
    if (!a) return NULL;
    if (k == T_NOT && a->type != ST_DYN && a->type != ST_BOOL) {
        perror_at(p, pos, "'!' applied to %s", stype_name(a->type));
        node_free(a);
        return NULL;
    }
    if (k == T_MINUS && a->type != ST_DYN && !is_num_type(a->type)) {
        perror_at(p, pos, "'-' applied to %s", stype_name(a->type));
        node_free(a);
        return NULL;
    }
    cel_node *n = mk1(p, k == T_NOT ? N_NOT : N_NEG, pos, a);
    if (n) n->type = k == T_NOT ? ST_BOOL : a->type;
    return n;
}

/* Static check and result type of a binary operator. */
static int binop_type(parser *p, int op, size_t pos, cel_node *a, cel_node *b, enum stype *out) {
    enum stype x = a->type, y = b->type;
    int known = x != ST_DYN && y != ST_DYN;
    int both_num = is_num_type(x) && is_num_type(y);
    static const char *names[] = {"==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%"};
    *out = ST_BOOL;
    switch (op) {
    case OP_EQ:
    case OP_NE:
        /* null compares with anything; numbers compare across types. */
        if (known && x != y && !both_num && x != ST_NULL && y != ST_NULL) goto bad;
        return 0;
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE:
        if (x == ST_NULL || x == ST_LIST || y == ST_NULL || y == ST_LIST) goto bad;
        if (known && x != y && !both_num) goto bad;
        return 0;
    case OP_IN:
        if (y != ST_DYN && y != ST_LIST) goto bad;
        return 0;
    case OP_ADD:
        if (known && !both_num && (x != y || (x != ST_STRING && x != ST_LIST))) goto bad;
        if (x == ST_BOOL || x == ST_NULL || y == ST_BOOL || y == ST_NULL) goto bad;
        *out = !known ? ST_DYN : (x == ST_INT && y == ST_INT) ? ST_INT : both_num ? ST_DOUBLE : x;
        return 0;
    default: /* - * / % */
        if ((x != ST_DYN && !is_num_type(x)) || (y != ST_DYN && !is_num_type(y))) goto bad;
        if (op == OP_MOD && (x == ST_DOUBLE || y == ST_DOUBLE)) goto bad;
        *out = !known ? ST_DYN : (x == ST_INT && y == ST_INT) ? ST_INT : ST_DOUBLE;
        return 0;
    }
bad:
    perror_at(p, pos, "no operator '%s' for %s and %s", names[op], stype_name(x), stype_name(y));
    return -1;
}

static cel_node *parse_binary(parser *p, int level);

/* Precedence levels: 0 relations, 1 additive, 2 multiplicative. */
static int tok_binop(enum tok_kind k, int level) {
    switch (level) {
    case 0:
        switch (k) {
        case T_EQ: return OP_EQ;
        case T_NE: return OP_NE;
        case T_LT: return OP_LT;
        case T_LE: return OP_LE;
        case T_GT: return OP_GT;
        case T_GE: return OP_GE;
        case T_IN: return OP_IN;
        default: return -1;
        }
    case 1: return k == T_PLUS ? OP_ADD : k == T_MINUS ? OP_SUB : -1;
    default: return k == T_STAR ? OP_MUL : k == T_SLASH ? OP_DIV : k == T_PERCENT ? OP_MOD : -1;
    }
}

static cel_node *parse_binary(parser *p, int level) {
    cel_node *n = level < 2 ? parse_binary(p, level + 1) : parse_unary(p);
    int op;
    while (n && (op = tok_binop(p->tok.kind, level)) >= 0) {
        size_t pos = p->tok.pos;
        cel_node *b;
        if (next(p) < 0 || !(b = level < 2 ? parse_binary(p, level + 1) : parse_unary(p))) break;
        enum stype type;
        if (binop_type(p, op, pos, n, b, &type) < 0) {
            node_free(b);
            break;
        }
        n = mk2(p, N_BINOP, op, pos, n, b);
        if (n) n->type = type;
    }
    if (p->failed) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* && and || chains as one n-ary node. */
static cel_node *parse_logic(parser *p, enum tok_kind k) {
    nodevec terms = {0};
    size_t pos = p->tok.pos;
    for (;;) {
        cel_node *e = k == T_OR ? parse_logic(p, T_AND) : parse_binary(p, 0);
        if (!e) goto fail;
        /* Only an operand of && or || must be a bool. */
        if ((terms.n > 0 || p->tok.kind == k) && e->type != ST_DYN && e->type != ST_BOOL) {
            perror_at(p, e->pos, "operand of '%s' is %s, not bool", k == T_OR ? "||" : "&&", stype_name(e->type));
            node_free(e);
            goto fail;
        }
        if (nodevec_push(p, &terms, e) < 0) goto fail;
        if (p->tok.kind != k) break;
        if (next(p) < 0) goto fail;
    }
    if (terms.n == 1) {
        cel_node *only = terms.v[0];
        free(terms.v);
        return only;
    }
    cel_node *n = mknode(p, k == T_OR ? N_OR : N_AND, pos, terms.n, terms.v);
    free(terms.v);
    if (n) n->type = ST_BOOL;
    return n;
fail:
    nodevec_free(&terms);
    return NULL;
}

static cel_node *parse_expr(parser *p) {
    /* Parentheses, lists and arguments recurse through here without always
     * adding a tree level, so the recursion itself is bounded too. */
    if (++p->depth > CEL_MAX_DEPTH) {
        perror_at(p, p->tok.pos, "expression nests too deeply (limit %d)", CEL_MAX_DEPTH);
        p->depth--;
        return NULL;
    }
    cel_node *c = parse_logic(p, T_OR), *a = NULL, *b = NULL, *n = NULL;
    if (c && p->tok.kind == T_QUEST) {
        size_t pos = p->tok.pos;
        if (c->type != ST_DYN && c->type != ST_BOOL) {
            perror_at(p, c->pos, "condition of '?:' is %s, not bool", stype_name(c->type));
            goto out;
        }
        if (next(p) < 0 || !(a = parse_logic(p, T_OR))) goto out;
        if (expect(p, T_COLON, "':'") < 0 || !(b = parse_expr(p))) goto out;
        cel_node *kids[3] = {c, a, b};
        c = a = b = NULL;
        n = mknode(p, N_COND, pos, 3, kids);
        if (n) n->type = kids[1]->type == kids[2]->type ? kids[1]->type : ST_DYN;
    } else {
        n = c;
        c = NULL;
    }
out:
    node_free(c);
    node_free(a);
    node_free(b);
    p->depth--;
    if (p->failed) {
        node_free(n);
        return NULL;
    }
    return n;
}

cel_program *cel_compilen(const char *expr, size_t len, char *err, size_t errlen) {
    parser p = {0};
    p.err = err;
    p.errlen = errlen;
    if (err && errlen) err[0] = '\0';
    if (!expr) {
        if (err && errlen) snprintf(err, errlen, "no expression");
        return NULL;
    }
    p.src = expr;
    p.len = len;
    if (len > CEL_MAX_EXPR_LEN) {
        p.len = 40; /* quote only the start */
        perror_at(&p, 0, "expression is longer than %d bytes", CEL_MAX_EXPR_LEN);
        return NULL;
    }
    const char *nul = memchr(expr, '\0', len);
    if (nul) {
        perror_at(&p, (size_t)(nul - expr), "NUL byte in expression");
        return NULL;
    }
    cel_program *prog = calloc(1, sizeof(*prog));
    if (!prog || !(prog->src = malloc(len + 1))) {
        free(prog);
        perror_at(&p, 0, "out of memory");
        return NULL;
    }
    /* Parse our NUL-terminated copy: strtod() and friends need one. */
    memcpy(prog->src, expr, len);
    prog->src[len] = '\0';
    p.src = prog->src;

    if (next(&p) == 0) {
        if (p.tok.kind == T_EOF) perror_at(&p, 0, "empty expression");
        else prog->root = parse_expr(&p);
    }
    if (prog->root && p.tok.kind != T_EOF) perror_at(&p, p.tok.pos, "unexpected '%.*s' after the end of the expression", (int)p.tok.len, p.src + p.tok.pos);
    if (prog->root && !p.failed && prog->root->type != ST_DYN && prog->root->type != ST_BOOL)
        perror_at(&p, 0, "expression is %s, not bool", stype_name(prog->root->type));
    json_decref(p.tok.sval);
    if (p.failed) {
        cel_free(prog);
        return NULL;
    }
    return prog;
}

cel_program *cel_compile(const char *expr, char *err, size_t errlen) {
    return cel_compilen(expr, expr ? strlen(expr) : 0, err, errlen);
}

const char *cel_source(const cel_program *p) { return p ? p->src : NULL; }

void cel_free(cel_program *p) {
    if (!p) return;
    node_free(p->root);
    free(p->src);
    free(p);
}

/* ---- evaluator -------------------------------------------------------- */

/* A value during evaluation.  Parts of the event and the program's
 * constants are borrowed, never reference-counted: the event and a program
 * may be shared by several threads, and jansson's json_incref() reads the
 * count without atomics.  Only what evaluation computes is owned. */
typedef struct {
    json_t *j; /* NULL: an error, described in evctx.msg */
    int own;
} val;

static val borrowed(json_t *j) { return (val){j, 0}; }
static void drop(val v) {
    if (v.own) json_decref(v.j);
}

typedef struct {
    json_t *event;
    int oom;
    char msg[256];
} evctx;

/* The message is kept in the context until the end, because && and || may
 * absorb the error. */
static val fail(evctx *c, const cel_node *n, const char *fmt, ...) {
    char m[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    snprintf(c->msg, sizeof(c->msg), "%s (column %zu)", m, n->pos + 1);
    return (val){NULL, 0};
}

/* Wraps a value made by a json_*() constructor, which fails only when out
 * of memory.  The true/false/null singletons need no reference. */
static val made(evctx *c, const cel_node *n, json_t *j) {
    if (j) return (val){j, 1};
    c->oom = 1;
    return fail(c, n, "out of memory");
}

static val boolean(int b) { return borrowed(b ? json_true() : json_false()); }

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "map";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "int";
    case JSON_REAL: return "double";
    case JSON_TRUE:
    case JSON_FALSE: return "bool";
    default: return "null";
    }
}

/* Compares two numbers of any mix of int and double: <0, 0, >0. */
static int num_cmp(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return (x > y) - (x < y);
    }
    double x = json_number_value(a), y = json_number_value(b);
    return (x > y) - (x < y);
}

/* CEL equality: values of different types are unequal, except numbers,
 * which compare by value across int and double. */
static int value_eq(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) return num_cmp(a, b) == 0;
    if (json_typeof(a) != json_typeof(b)) return 0;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!value_eq(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !value_eq(v, w)) return 0;
        }
        return 1;
    }
    default:
        return 1; /* true, false, null: same type is same value */
    }
}

/* Looks a string value up as a map key.  jansson before 2.14 has no
 * length-aware lookup, and a key holding a NUL byte cannot be in a map
 * built by json_loads() of those versions anyway. */
static json_t *map_get(json_t *obj, const json_t *key) {
    if (strlen(json_string_value(key)) != json_string_length(key)) return NULL;
    return json_object_get(obj, json_string_value(key));
}

static val eval(const cel_node *n, evctx *c);

/* A private copy of a value, to put in a list that evaluation builds
 * (appending would take a reference on a shared value). */
static json_t *own_copy(val v) { return v.own ? json_incref(v.j) : json_deep_copy(v.j); }

/* n-ary && / ||.  CEL is commutative here: a deciding value (false for
 * &&, true for ||) wins over an error on either side; otherwise the first
 * error is the result. */
static val eval_logic(const cel_node *n, evctx *c) {
    int decider = n->kind == N_OR;
    int have_err = 0;
    char first_err[sizeof(c->msg)];
    for (size_t i = 0; i < n->nkids; i++) {
        val v = eval(n->kids[i], c);
        if (c->oom) return (val){NULL, 0};
        int b = v.j && json_is_boolean(v.j) ? json_is_true(v.j) : -1;
        if (v.j && b < 0) fail(c, n->kids[i], "operand of '%s' is %s, not bool", decider ? "||" : "&&", type_name(v.j));
        drop(v);
        if (b == decider) return boolean(decider);
        if (b < 0 && !have_err) {
            have_err = 1;
            memcpy(first_err, c->msg, sizeof(first_err));
        }
    }
    if (have_err) {
        memcpy(c->msg, first_err, sizeof(c->msg));
        return (val){NULL, 0};
    }
    return boolean(!decider);
}

/* A member of a container lives as long as the container: borrowed from a
 * borrowed one, referenced from one we own (which no other thread sees). */
static val member_of(val container, json_t *m) {
    return container.own ? (val){json_incref(m), 1} : borrowed(m);
}

static val eval_index(const cel_node *n, val obj, json_t *idx, evctx *c) {
    if (json_is_array(obj.j)) {
        json_int_t i;
        if (json_is_integer(idx)) i = json_integer_value(idx);
        else if (json_is_real(idx) && json_real_value(idx) == floor(json_real_value(idx)) &&
                 fabs(json_real_value(idx)) < 9.0e15)
            i = (json_int_t)json_real_value(idx);
        else return fail(c, n, "list index is %s, not int", type_name(idx));
        if (i < 0 || (size_t)i >= json_array_size(obj.j))
            return fail(c, n, "index %lld out of range (list size %zu)", (long long)i, json_array_size(obj.j));
        return member_of(obj, json_array_get(obj.j, (size_t)i));
    }
    if (json_is_object(obj.j)) {
        if (!json_is_string(idx)) return fail(c, n, "no such key (map key is %s)", type_name(idx));
        json_t *v = map_get(obj.j, idx);
        if (!v) return fail(c, n, "no such key '%s'", json_string_value(idx));
        return member_of(obj, v);
    }
    return fail(c, n, "%s cannot be indexed", type_name(obj.j));
}

static val arith(const cel_node *n, json_t *a, json_t *b, evctx *c) {
    if (n->op == OP_ADD && json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        char *s = malloc(la + lb + 1);
        if (!s) return made(c, n, NULL);
        memcpy(s, json_string_value(a), la);
        memcpy(s + la, json_string_value(b), lb);
        json_t *r = json_stringn_nocheck(s, la + lb); /* both halves are valid UTF-8 */
        free(s);
        return made(c, n, r);
    }
    if (n->op == OP_ADD && json_is_array(a) && json_is_array(b)) {
        json_t *r = json_array();
        for (size_t k = 0; r && k < 2; k++) {
            json_t *src = k ? b : a;
            for (size_t i = 0; r && i < json_array_size(src); i++)
                if (json_array_append_new(r, json_deep_copy(json_array_get(src, i))) < 0) {
                    json_decref(r);
                    r = NULL;
                }
        }
        return made(c, n, r);
    }
    static const char *names[] = {"", "", "", "", "", "", "", "+", "-", "*", "/", "%"};
    if (!json_is_number(a) || !json_is_number(b))
        return fail(c, n, "no operator '%s' for %s and %s", names[n->op], type_name(a), type_name(b));
    if (json_is_integer(a) && json_is_integer(b)) {
        /* CEL ints are 64-bit and overflow is an error, not a wrap. */
        int64_t x = json_integer_value(a), y = json_integer_value(b), r = 0;
        int over = 0;
        switch (n->op) {
        case OP_ADD: over = __builtin_add_overflow(x, y, &r); break;
        case OP_SUB: over = __builtin_sub_overflow(x, y, &r); break;
        case OP_MUL: over = __builtin_mul_overflow(x, y, &r); break;
        default:
            if (y == 0) return fail(c, n, "division by zero");
            if (x == INT64_MIN && y == -1) over = 1;
            else r = n->op == OP_DIV ? x / y : x % y;
        }
        if (over) return fail(c, n, "integer overflow");
        return made(c, n, json_integer(r));
    }
    if (n->op == OP_MOD) return fail(c, n, "no operator '%%' for %s and %s", type_name(a), type_name(b));
    double x = json_number_value(a), y = json_number_value(b), r;
    switch (n->op) {
    case OP_ADD: r = x + y; break;
    case OP_SUB: r = x - y; break;
    case OP_MUL: r = x * y; break;
    default: r = x / y; break;
    }
    /* JSON (and so jansson) has no infinities or NaN. */
    if (!isfinite(r)) return fail(c, n, "arithmetic result is not a finite number");
    return made(c, n, json_real(r));
}

static val eval_binop(const cel_node *n, evctx *c) {
    val va = eval(n->kids[0], c);
    if (!va.j) return va;
    val vb = eval(n->kids[1], c);
    if (!vb.j) {
        drop(va);
        return vb;
    }
    json_t *a = va.j, *b = vb.j;
    val r;
    switch (n->op) {
    case OP_EQ:
    case OP_NE:
        r = boolean(value_eq(a, b) == (n->op == OP_EQ));
        break;
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
        int cmp;
        if (json_is_number(a) && json_is_number(b)) cmp = num_cmp(a, b);
        else if (json_is_string(a) && json_is_string(b)) {
            /* Byte order of UTF-8 is code point order, as CEL wants. */
            size_t la = json_string_length(a), lb = json_string_length(b);
            cmp = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
            if (cmp == 0) cmp = (la > lb) - (la < lb);
        } else if (json_is_boolean(a) && json_is_boolean(b)) {
            cmp = json_is_true(a) - json_is_true(b);
        } else {
            static const char *names[] = {"", "", "<", "<=", ">", ">="};
            r = fail(c, n, "no operator '%s' for %s and %s", names[n->op], type_name(a), type_name(b));
            break;
        }
        r = boolean(n->op == OP_LT ? cmp < 0 : n->op == OP_LE ? cmp <= 0 : n->op == OP_GT ? cmp > 0 : cmp >= 0);
        break;
    }
    case OP_IN:
        if (json_is_array(b)) {
            int found = 0;
            for (size_t i = 0; !found && i < json_array_size(b); i++) found = value_eq(a, json_array_get(b, i));
            r = boolean(found);
        } else if (json_is_object(b)) {
            r = boolean(json_is_string(a) && map_get(b, a) != NULL);
        } else {
            r = fail(c, n, "'in' needs a list or a map, not %s", type_name(b));
        }
        break;
    default:
        r = arith(n, a, b, c);
    }
    drop(va);
    drop(vb);
    return r;
}

/* The shortest "%g" form that reads back as the same double. */
static void format_double(double d, char *buf, size_t len) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
}

/* int(), double(), string(): always a new value. */
static val convert(const cel_node *n, json_t *a, evctx *c) {
    char buf[64];
    const char *s = json_is_string(a) ? json_string_value(a) : "";
    size_t slen = json_is_string(a) ? json_string_length(a) : 0;
    char *end;
    switch (n->op) {
    case F_INT:
        if (json_is_integer(a)) return made(c, n, json_integer(json_integer_value(a)));
        if (json_is_real(a)) {
            double d = json_real_value(a);
            /* 2^63 is exactly representable; anything at or past it is out
             * of range. */
            if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0))
                return fail(c, n, "int() argument out of range");
            return made(c, n, json_integer((json_int_t)d));
        }
        if (json_is_string(a)) {
            /* strtoll() would skip leading spaces and stop at a NUL. */
            errno = 0;
            long long v = strchr("+-0123456789", s[0]) && s[0] ? strtoll(s, &end, 10) : 0;
            if (!s[0] || !strchr("+-0123456789", s[0]) || *end || errno == ERANGE || (size_t)(end - s) != slen)
                return fail(c, n, "int() cannot parse \"%.40s\"", s);
            return made(c, n, json_integer(v));
        }
        return fail(c, n, "int() does not apply to %s", type_name(a));
    case F_DOUBLE:
        if (json_is_number(a)) return made(c, n, json_real(json_number_value(a)));
        if (json_is_string(a)) {
            double d = s[0] && strchr("+-.0123456789", s[0]) ? strtod(s, &end) : 0;
            if (!s[0] || !strchr("+-.0123456789", s[0]) || *end || !isfinite(d) || (size_t)(end - s) != slen)
                return fail(c, n, "double() cannot parse \"%.40s\"", s);
            return made(c, n, json_real(d));
        }
        return fail(c, n, "double() does not apply to %s", type_name(a));
    default: /* F_STRING */
        if (json_is_string(a)) return made(c, n, json_stringn_nocheck(s, slen));
        if (json_is_integer(a)) snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(a));
        else if (json_is_real(a)) format_double(json_real_value(a), buf, sizeof(buf));
        else if (json_is_boolean(a)) snprintf(buf, sizeof(buf), "%s", json_is_true(a) ? "true" : "false");
        else return fail(c, n, "string() does not apply to %s", type_name(a));
        return made(c, n, json_string(buf));
    }
}

/* Substring search that allows NUL bytes (JSON strings may hold them). */
static int mem_contains(const char *h, size_t hl, const char *nd, size_t nl) {
    if (nl == 0) return 1;
    for (size_t i = 0; i + nl <= hl; i++)
        if (h[i] == nd[0] && !memcmp(h + i, nd, nl)) return 1;
    return 0;
}

static val eval_call(const cel_node *n, evctx *c) {
    val va = eval(n->kids[0], c), vb = {NULL, 0}, r;
    if (!va.j) return va;
    json_t *a = va.j;
    if (n->op == F_SIZE) {
        if (json_is_string(a)) {
            /* CEL counts code points, not bytes. */
            size_t cps = 0, len = json_string_length(a);
            const unsigned char *s = (const unsigned char *)json_string_value(a);
            for (size_t i = 0; i < len; i++) cps += (s[i] & 0xc0) != 0x80;
            r = made(c, n, json_integer((json_int_t)cps));
        } else if (json_is_array(a)) r = made(c, n, json_integer((json_int_t)json_array_size(a)));
        else if (json_is_object(a)) r = made(c, n, json_integer((json_int_t)json_object_size(a)));
        else r = fail(c, n, "size() does not apply to %s", type_name(a));
        goto out;
    }
    if (n->op == F_INT || n->op == F_DOUBLE || n->op == F_STRING) {
        r = convert(n, a, c);
        goto out;
    }
    vb = eval(n->kids[1], c);
    if (!vb.j) {
        r = vb;
        goto out;
    }
    json_t *b = vb.j;
    if (!json_is_string(a) || !json_is_string(b)) {
        r = fail(c, n, "string function applied to %s and %s", type_name(a), type_name(b));
        goto out;
    }
    const char *s = json_string_value(a), *t = json_string_value(b);
    size_t sl = json_string_length(a), tl = json_string_length(b);
    switch (n->op) {
    case F_STARTS: r = boolean(tl <= sl && !memcmp(s, t, tl)); break;
    case F_ENDS: r = boolean(tl <= sl && !memcmp(s + sl - tl, t, tl)); break;
    case F_CONTAINS: r = boolean(mem_contains(s, sl, t, tl)); break;
    default: { /* F_MATCHES */
        regex_t dyn, *re = n->re;
        if (!re) {
            char msg[200];
            if (strlen(t) != tl) {
                r = fail(c, n, "NUL byte in regular expression");
                break;
            }
            if (compile_regex(t, &dyn, msg, sizeof(msg)) < 0) {
                r = fail(c, n, "%s", msg);
                break;
            }
            re = &dyn;
        }
        /* regexec() stops at a NUL byte: a string holding one is matched
         * up to it only. */
        r = boolean(regexec(re, s, 0, NULL, 0) == 0);
        if (re == &dyn) regfree(&dyn);
    }
    }
out:
    drop(va);
    drop(vb);
    return r;
}

static val eval(const cel_node *n, evctx *c) {
    val v, w, r;
    switch (n->kind) {
    case N_LIT:
        return borrowed(n->lit);
    case N_EVENT:
        return borrowed(c->event);
    case N_LIST: {
        json_t *arr = json_array();
        if (!arr) return made(c, n, NULL);
        for (size_t i = 0; i < n->nkids; i++) {
            if (!(v = eval(n->kids[i], c)).j) {
                json_decref(arr);
                return v;
            }
            int rc = json_array_append_new(arr, own_copy(v));
            drop(v);
            if (rc < 0) {
                json_decref(arr);
                return made(c, n, NULL);
            }
        }
        return made(c, n, arr);
    }
    case N_SELECT:
    case N_HAS:
        if (!(v = eval(n->kids[0], c)).j) return v;
        if (!json_is_object(v.j)) {
            r = fail(c, n, "%s has no field '%s'", type_name(v.j), n->name);
        } else {
            json_t *m = json_object_get(v.j, n->name);
            if (n->kind == N_HAS) r = boolean(m != NULL);
            else r = m ? member_of(v, m) : fail(c, n, "no such key '%s'", n->name);
        }
        drop(v);
        return r;
    case N_INDEX:
        if (!(v = eval(n->kids[0], c)).j) return v;
        if (!(w = eval(n->kids[1], c)).j) {
            drop(v);
            return w;
        }
        r = eval_index(n, v, w.j, c);
        drop(v);
        drop(w);
        return r;
    case N_NOT:
        if (!(v = eval(n->kids[0], c)).j) return v;
        r = json_is_boolean(v.j) ? boolean(!json_is_true(v.j)) : fail(c, n, "'!' applied to %s", type_name(v.j));
        drop(v);
        return r;
    case N_NEG:
        if (!(v = eval(n->kids[0], c)).j) return v;
        if (json_is_integer(v.j) && json_integer_value(v.j) != INT64_MIN) r = made(c, n, json_integer(-json_integer_value(v.j)));
        else if (json_is_real(v.j)) r = made(c, n, json_real(-json_real_value(v.j)));
        else if (json_is_integer(v.j)) r = fail(c, n, "integer overflow");
        else r = fail(c, n, "'-' applied to %s", type_name(v.j));
        drop(v);
        return r;
    case N_AND:
    case N_OR:
        return eval_logic(n, c);
    case N_COND:
        if (!(v = eval(n->kids[0], c)).j) return v;
        if (!json_is_boolean(v.j)) {
            r = fail(c, n, "condition of '?:' is %s, not bool", type_name(v.j));
            drop(v);
            return r;
        }
        r = eval(n->kids[json_is_true(v.j) ? 1 : 2], c);
        drop(v);
        return r;
    case N_BINOP:
        return eval_binop(n, c);
    case N_CALL:
        return eval_call(n, c);
    }
    return fail(c, n, "internal error: unknown node");
}

int cel_eval_bool(const cel_program *p, json_t *event, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (!p || !event) {
        if (err && errlen) snprintf(err, errlen, "cel_eval_bool: %s is NULL", p ? "event" : "program");
        return -1;
    }
    evctx c = {.event = event};
    val v = eval(p->root, &c);
    if (!v.j) {
        if (err && errlen) snprintf(err, errlen, "%s", c.msg);
        return c.oom ? -1 : 0;
    }
    int rc = 0;
    if (json_is_boolean(v.j)) rc = json_is_true(v.j);
    else if (err && errlen) snprintf(err, errlen, "expression evaluated to %s, not bool", type_name(v.j));
    drop(v);
    return rc;
}
