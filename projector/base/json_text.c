/* json_text.c - JSON strings that never fail on bytes that are not UTF-8. */
#include "base/json_text.h"

#include <assert.h>
#include <stdlib.h>

#include "base/util.h"

json_t *json_text_string(const char *s)
{
    json_t *j;
    char *copy;

    assert(s != NULL);
    j = json_string(s);
    if (j)
        return j;
    copy = xstrdup(s);
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    j = json_string(copy);
    free(copy);
    assert(j != NULL);
    return j;
}
