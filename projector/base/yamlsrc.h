/* yamlsrc.h - a thin libyaml wrapper whose nodes remember file:line:column.
 *
 * A YamlSrc owns one parsed document (the first of the stream) and the file name used in
 * diagnostics. Node pointers stay valid until yamlsrc_free. Positions are 1-based.
 */
#ifndef PROJECTOR_YAMLSRC_H
#define PROJECTOR_YAMLSRC_H

#include <yaml.h>

#include "base/util.h"

typedef struct YamlSrc YamlSrc;
typedef yaml_node_t YamlNode;

/* Parses a file. On a syntax error adds "file:line:col: message" to diag and returns
 * -PJ_EINVAL; -PJ_EIO when the file cannot be read. *ret is owned by the caller. */
int yamlsrc_load_file(const char *path, YamlSrc **ret, Diagnostics *diag) PJ_MUSTCHECK;
/* Same from memory; name is used in diagnostics (copied). */
int yamlsrc_load_string(const char *name, const char *text, size_t len, YamlSrc **ret,
                        Diagnostics *diag) PJ_MUSTCHECK;
YamlSrc *yamlsrc_free(YamlSrc *src);

const char *yamlsrc_file(const YamlSrc *src);
/* The root node, or NULL for an empty document. */
YamlNode *yamlsrc_root(const YamlSrc *src);

int yamlsrc_line(const YamlNode *node);
int yamlsrc_column(const YamlNode *node);

bool yamlsrc_is_scalar(const YamlNode *node);
bool yamlsrc_is_mapping(const YamlNode *node);
bool yamlsrc_is_sequence(const YamlNode *node);
/* A short noun for messages: "a scalar", "a mapping", "a sequence". */
const char *yamlsrc_kind_name(const YamlNode *node);

/* The scalar's text (NUL-terminated, borrowed), or NULL when node is not a scalar. */
const char *yamlsrc_scalar(const YamlNode *node);
/* True for '...' and "..." scalars, which are never YAML null or numbers. */
bool yamlsrc_scalar_quoted(const YamlNode *node);
/* True for a plain scalar spelling YAML null: "", "~", "null", "Null", "NULL". */
bool yamlsrc_scalar_is_null(const YamlNode *node);

size_t yamlsrc_map_count(const YamlNode *node);
YamlNode *yamlsrc_map_key(const YamlSrc *src, const YamlNode *node, size_t i);
YamlNode *yamlsrc_map_value(const YamlSrc *src, const YamlNode *node, size_t i);
/* The value under a scalar key, or NULL. */
YamlNode *yamlsrc_map_get(const YamlSrc *src, const YamlNode *node, const char *key);

size_t yamlsrc_seq_count(const YamlNode *node);
YamlNode *yamlsrc_seq_item(const YamlSrc *src, const YamlNode *node, size_t i);

#endif
