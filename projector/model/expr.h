/* expr.h - the value language of read models: paths, literals, functions, arithmetic, and
 * the `when:` conditions. Parse once at load time, evaluate per event in C. Pure.
 *
 * Grammar (whitespace between tokens is free):
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := '-' unary | primary
 *   primary := path | number | 'string' | func '(' [expr (',' expr)*] ')' | '(' expr ')'
 *            | 'null' | 'true' | 'false'
 *   path    := '$' ( '.' name | '[' digits ']' | '[*]' )*      name := [A-Za-z0-9_-]+
 *   The first step of a path must name a field of the normalized event: type, event_id,
 *   aggregate_id, aggregate_type, version, occurred_at, payload, metadata, stream,
 *   entry_id (anything else is a parse error naming the expected fields).
 *   cond    := disj ;  disj := conj ('or' conj)* ;  conj := neg ('and' neg)*
 *   neg     := 'not' neg | '(' cond ')' | 'exists' '(' path ')' | expr cmp expr
 *   cmp     := '==' | '!=' | '<' | '<=' | '>' | '>='
 * Functions: length(x) sum(x) coalesce(a, ...) lower(x) upper(x) concat(a, ...) now().
 *
 * Evaluation rules (documented in the README):
 *   - a path that is absent yields null; `[*]` collects the rest of the path over every
 *     element of an array into a JSON array (absent elements are left out);
 *   - numbers and strings that spell a number ("99.99") are numbers in arithmetic, sum and
 *     comparisons; arithmetic with a null operand yields null; arithmetic on anything else
 *     is an error (the event is dead-lettered); division by zero is an error;
 *   - computed numbers are formatted with at most 15 significant digits, so 3 * 19.99
 *     gives "59.97"; numbers read from the event keep their own spelling;
 *   - length: array elements, object members, or UTF-8 characters of a string; null -> null;
 *   - sum: of an array's numeric elements (nulls skipped, empty array -> 0);
 *   - coalesce: first non-null argument; concat: strings joined, nulls skipped;
 *     lower/upper: ASCII case mapping, null -> null; now(): current UTC time, ISO 8601.
 */
#ifndef PROJECTOR_EXPR_H
#define PROJECTOR_EXPR_H

#include <jansson.h>

#include "base/util.h"

typedef enum {
    EXPR_VAL_NULL = 0,
    EXPR_VAL_BOOL,
    EXPR_VAL_NUMBER,
    EXPR_VAL_STRING,
    EXPR_VAL_JSON
} ValueKind;

/* A computed value. Owns text and json; release with value_done. */
typedef struct Value {
    ValueKind kind;
    bool boolean;  /* EXPR_VAL_BOOL */
    double number; /* EXPR_VAL_NUMBER: the numeric value */
    char *text;    /* EXPR_VAL_NUMBER: its spelling ("99.99"); EXPR_VAL_STRING: the UTF-8 string */
    json_t *json;  /* EXPR_VAL_JSON: an array or object (one reference owned) */
} Value;

void value_done(Value *v);
/* Builds a Value from a JSON node (borrowed; NULL means absent -> EXPR_VAL_NULL). */
void value_from_json(const json_t *j, Value *ret);
/* The text a SQL parameter carries: NULL for EXPR_VAL_NULL, "true"/"false", the number's
 * spelling, the string, or compact JSON for arrays and objects. Caller frees. */
char *value_to_param(const Value *v);
/* True when v is a number, or a string that spells one (then *ret holds it). */
bool value_as_number(const Value *v, double *ret);

typedef enum { EXPR_LITERAL, EXPR_PATH, EXPR_CALL, EXPR_ARITH, EXPR_NEGATE } ExprKind;
typedef enum {
    EXPR_FUNC_LENGTH,
    EXPR_FUNC_SUM,
    EXPR_FUNC_COALESCE,
    EXPR_FUNC_LOWER,
    EXPR_FUNC_UPPER,
    EXPR_FUNC_CONCAT,
    EXPR_FUNC_NOW
} ExprFunc;
typedef enum { EXPR_PATH_KEY, EXPR_PATH_INDEX, EXPR_PATH_ALL } PathStepKind;

typedef struct PathStep {
    PathStepKind kind;
    char *key;    /* EXPR_PATH_KEY, owned */
    size_t index; /* EXPR_PATH_INDEX */
} PathStep;

typedef struct Expr Expr;
struct Expr {
    ExprKind kind;
    int line, column; /* 1-based position in the source file, 0 when unknown */
    Value literal;    /* EXPR_LITERAL */
    PathStep *steps;  /* EXPR_PATH (owned); zero steps means the whole event */
    size_t nsteps;
    char *text;    /* the source text of this node, owned (for messages) */
    ExprFunc func; /* EXPR_CALL */
    Expr **args;   /* EXPR_CALL, owned */
    size_t nargs;
    char op;     /* EXPR_ARITH: '+', '-', '*', '/' */
    Expr *left;  /* EXPR_ARITH, EXPR_NEGATE (operand) */
    Expr *right; /* EXPR_ARITH */
};

typedef enum {
    EXPR_COND_CMP,
    EXPR_COND_EXISTS,
    EXPR_COND_AND,
    EXPR_COND_OR,
    EXPR_COND_NOT
} CondKind;
typedef enum { EXPR_CMP_EQ, EXPR_CMP_NE, EXPR_CMP_LT, EXPR_CMP_LE, EXPR_CMP_GT, EXPR_CMP_GE } CmpOp;

typedef struct Cond Cond;
struct Cond {
    CondKind kind;
    int line, column;
    CmpOp op;           /* EXPR_COND_CMP */
    Expr *left, *right; /* EXPR_COND_CMP operands; EXPR_COND_EXISTS uses left (a path) */
    Cond *a, *b;        /* EXPR_COND_AND / EXPR_COND_OR use both, EXPR_COND_NOT uses a */
};

/* True when a YAML scalar is to be read as an expression rather than a literal: it
 * contains "$." or "$[" or is exactly "$", or it starts with "name(" or "(". */
bool expr_looks_like_expression(const char *text);

/* Parses text as an expression. line/column give the position of text[0] in the file;
 * errors are reported with the column of the offending token (for single-line text).
 * On error returns -PJ_EINVAL, fills err->message (without position) and sets
 * *reterr_line and *reterr_column (either may be NULL). *ret is owned by the caller. */
int expr_parse(const char *text, int line, int column, Expr **ret, PjError *err, int *reterr_line,
               int *reterr_column) PJ_MUSTCHECK;
/* A literal from YAML: a plain null scalar gives EXPR_VAL_NULL, anything else EXPR_VAL_STRING
 * (numbers included: they become numbers where a number is needed). */
Expr *expr_new_literal(const char *text, bool is_null, int line, int column);
Expr *expr_free(Expr *e);

/* Conditions; same conventions as expr_parse. */
int cond_parse(const char *text, int line, int column, Cond **ret, PjError *err, int *reterr_line,
               int *reterr_column) PJ_MUSTCHECK;
Cond *cond_free(Cond *c);

/* Evaluates e against the normalized event (a JSON object, borrowed). On success *ret
 * holds an owned value. Returns -PJ_EPERMANENT with err set for data errors
 * ("cannot multiply \"abc\": not a number"). */
int expr_eval(const Expr *e, const json_t *event, Value *ret, PjError *err) PJ_MUSTCHECK;
int cond_eval(const Cond *c, const json_t *event, bool *ret, PjError *err) PJ_MUSTCHECK;

#endif
