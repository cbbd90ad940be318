/* yamlsrc.c - load one YAML document with libyaml and answer questions about its nodes.
 *
 * Owns the yaml_document_t and a copy of the file name. libyaml marks are 0-based; every
 * position leaving this file is 1-based.
 */
#include "base/yamlsrc.h"

#include <stdlib.h>
#include <string.h>

struct YamlSrc {
    char *file;
    yaml_document_t doc;
};

static void add_parser_error(Diagnostics *diag, const char *file, const yaml_parser_t *p)
{
    const yaml_mark_t *m = p->problem != NULL ? &p->problem_mark : &p->context_mark;
    const char *problem = p->problem != NULL ? p->problem : "invalid YAML";
    if (p->context != NULL)
        diag_add(diag, file, (int)m->line + 1, (int)m->column + 1, "invalid YAML: %s %s", problem,
                 p->context);
    else
        diag_add(diag, file, (int)m->line + 1, (int)m->column + 1, "invalid YAML: %s", problem);
}

int yamlsrc_load_string(const char *name, const char *text, size_t len, YamlSrc **ret,
                        Diagnostics *diag)
{
    yaml_parser_t parser;
    YamlSrc *src = xcalloc(1, sizeof *src);
    src->file = xstrdup(name);
    if (!yaml_parser_initialize(&parser)) {
        diag_add(diag, name, 0, 0, "could not initialise the YAML parser");
        yamlsrc_free(src);
        return -PJ_EIO;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &src->doc)) {
        add_parser_error(diag, name, &parser);
        yaml_parser_delete(&parser);
        free(src->file);
        free(src);
        return -PJ_EINVAL;
    }
    yaml_parser_delete(&parser);
    *ret = src;
    return 0;
}

int yamlsrc_load_file(const char *path, YamlSrc **ret, Diagnostics *diag)
{
    char *text;
    size_t len;
    PjError err;
    if (read_file(path, &text, &len, &err) < 0) {
        diag_add(diag, path, 0, 0, "%s", err.message);
        return -PJ_EIO;
    }
    int r = yamlsrc_load_string(path, text, len, ret, diag);
    free(text);
    return r;
}

YamlSrc *yamlsrc_free(YamlSrc *src)
{
    if (src != NULL) {
        yaml_document_delete(&src->doc);
        free(src->file);
        free(src);
    }
    return NULL;
}

const char *yamlsrc_file(const YamlSrc *src)
{
    return src->file;
}

/* libyaml's yaml_document_get_node wants a mutable document only to read one: index its
 * node table here instead. Node ids are 1-based; 0 or one past the table is no node. */
static YamlNode *node_at(const YamlSrc *src, int id)
{
    const yaml_document_t *doc = &src->doc;

    if (id <= 0 || id > doc->nodes.top - doc->nodes.start)
        return NULL;
    return doc->nodes.start + (id - 1);
}

YamlNode *yamlsrc_root(const YamlSrc *src)
{
    return node_at(src, 1);
}

int yamlsrc_line(const YamlNode *node)
{
    return (int)node->start_mark.line + 1;
}

int yamlsrc_column(const YamlNode *node)
{
    return (int)node->start_mark.column + 1;
}

bool yamlsrc_is_scalar(const YamlNode *node)
{
    return node != NULL && node->type == YAML_SCALAR_NODE;
}

bool yamlsrc_is_mapping(const YamlNode *node)
{
    return node != NULL && node->type == YAML_MAPPING_NODE;
}

bool yamlsrc_is_sequence(const YamlNode *node)
{
    return node != NULL && node->type == YAML_SEQUENCE_NODE;
}

const char *yamlsrc_kind_name(const YamlNode *node)
{
    if (yamlsrc_is_mapping(node))
        return "a mapping";
    if (yamlsrc_is_sequence(node))
        return "a sequence";
    return "a scalar";
}

const char *yamlsrc_scalar(const YamlNode *node)
{
    if (!yamlsrc_is_scalar(node))
        return NULL;
    return (const char *)node->data.scalar.value;
}

bool yamlsrc_scalar_quoted(const YamlNode *node)
{
    return yamlsrc_is_scalar(node) && (node->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                                       node->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

bool yamlsrc_scalar_is_null(const YamlNode *node)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (!yamlsrc_is_scalar(node) || yamlsrc_scalar_quoted(node))
        return false;
    if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
        node->data.scalar.style != YAML_ANY_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
        if (strcmp(yamlsrc_scalar(node), nulls[i]) == 0)
            return true;
    return false;
}

size_t yamlsrc_map_count(const YamlNode *node)
{
    if (!yamlsrc_is_mapping(node))
        return 0;
    return (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
}

YamlNode *yamlsrc_map_key(const YamlSrc *src, const YamlNode *node, size_t i)
{
    yaml_node_pair_t *pair = &node->data.mapping.pairs.start[i];
    return node_at(src, pair->key);
}

YamlNode *yamlsrc_map_value(const YamlSrc *src, const YamlNode *node, size_t i)
{
    yaml_node_pair_t *pair = &node->data.mapping.pairs.start[i];
    return node_at(src, pair->value);
}

YamlNode *yamlsrc_map_get(const YamlSrc *src, const YamlNode *node, const char *key)
{
    size_t n = yamlsrc_map_count(node);
    for (size_t i = 0; i < n; i++) {
        const char *k = yamlsrc_scalar(yamlsrc_map_key(src, node, i));
        if (k != NULL && strcmp(k, key) == 0)
            return yamlsrc_map_value(src, node, i);
    }
    return NULL;
}

size_t yamlsrc_seq_count(const YamlNode *node)
{
    if (!yamlsrc_is_sequence(node))
        return 0;
    return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

YamlNode *yamlsrc_seq_item(const YamlSrc *src, const YamlNode *node, size_t i)
{
    return node_at(src, node->data.sequence.items.start[i]);
}
