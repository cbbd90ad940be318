/* expr_internal.h - what the expr_*.c files share, included by nothing else: the lexical
 * constants, the Value helpers of expr_value.c and the scanner of expr_scan.c.
 * The files stand in a strict order, each using only names from those before it:
 * expr_value.c < expr_tree.c < expr_scan.c < expr_parse.c, and expr_value.c < expr_eval.c.
 */
#ifndef PROJECTOR_EXPR_INTERNAL_H
#define PROJECTOR_EXPR_INTERNAL_H

#include "model/expr.h"

/* Bounds how deeply parentheses, calls, unary minus and operator chains may nest, so that
 * parsing, evaluating and freeing a tree from a YAML file cannot exhaust the stack. */
#define EXPR_DEPTH_MAX 200

#define EXPR_NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
#define EXPR_DIGITS "0123456789"

/* ---- expr_value.c ---- */

/* A computed number: at most 15 significant digits, and the value is what the spelling
 * says, so that 3 * 19.99 both prints and compares as 59.97. */
void value_set_computed(Value *ret, double x);
/* A string value; takes ownership of owned. */
void value_set_string(Value *ret, char *owned);
/* A short description of v for error messages: "abc" quoted, numbers and bools as they
 * are, "an array" or "an object" for JSON. Writes at most size bytes to buf. */
void value_describe(const Value *v, char *buf, size_t size);

/* ---- expr_scan.c ---- */

typedef struct ExprParser {
    const char *text; /* borrowed, NUL-terminated */
    size_t pos;       /* byte offset of the next character to read */
    int line, column; /* position of text[0] in the file */
    int depth;        /* current nesting, at most EXPR_DEPTH_MAX */
    bool failed;
    size_t err_pos; /* byte offset the first error points at */
    PjError error;
} ExprParser;

void expr_parser_init(ExprParser *p, const char *text, int line, int column);
/* The file column of byte offset pos of the text, 0 when the position is unknown. */
int expr_parser_column(const ExprParser *p, size_t pos);
char expr_peek(const ExprParser *p);
void expr_skip_space(ExprParser *p);
bool expr_is_name_start(char c);
/* Length of the identifier [A-Za-z_][A-Za-z0-9_]* at s, or 0. */
size_t expr_word_length(const char *s);
/* True when the word at the current position is exactly kw (case-sensitive). */
bool expr_at_keyword(const ExprParser *p, const char *kw);
/* The length of the token at pos, for messages: a word, a two-character operator, or one
 * (possibly multi-byte UTF-8) character. */
int expr_token_length(const ExprParser *p, size_t pos);
/* Records the first error (later ones are consequences) and returns NULL for chaining. */
void *expr_parser_fail(ExprParser *p, size_t pos, const char *fmt, ...) PJ_PRINTF(3, 4);
/* One level deeper; false (and the error recorded) past EXPR_DEPTH_MAX. The caller
 * decrements p->depth when it leaves the level. */
bool expr_parser_enter(ExprParser *p);
/* Copies the recorded error to err and the out-parameters; returns -PJ_EINVAL. */
int expr_parser_report(const ExprParser *p, PjError *err, int *reterr_line, int *reterr_column);

/* Copies v into *ret (deep for text, a new reference for json). */
void value_copy(const Value *v, Value *ret);

#endif
