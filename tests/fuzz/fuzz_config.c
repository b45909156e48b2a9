/* fuzz_config.c - the three ways options arrive as text:
 *   bt_config_set(name, value), the input split at its first NUL, or else at its
 *     first '=' (then read back with bt_config_get and bt_config_is_set);
 *   bti_config_set_lines, the library's "name=value" lines (what
 *     bt_config_read_checkpoint applies from a file's metadata), all or nothing:
 *     on failure the config's lines are unchanged;
 *   cfg_read_file, the barlow command's config-file reader (examples/barlow/config.c),
 *     on the input written to a file. */
#include "common/internal.h"

#include "fuzz_util.h"

#include <barlow.h>

/* examples/barlow/cli.h declares it; the CLI's headers are not on this target's path. */
int cfg_read_file(bt_config *c, const char *path, char *err, size_t cap);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *cfg_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_make("cfg");
    cfg_path = fuzz_path("in.cfg");
    return 0;
}

/* Every option's current value, as the library writes them; *out malloc'd. */
static char *dump(const bt_config *c)
{
    char *out = NULL;
    bt_status st = bti_config_lines(c, "", NULL, "fuzz", &out);
    FUZZ_CHECK(st == BT_OK, "bti_config_lines: %s", bt_last_error());
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *name, *value, *sep, *before, *after, got[4096], err[8192];
    bt_config *c;
    bt_status st;

    FUZZ_CHECK(text, "malloc");
    if (size)
        memcpy(text, data, size);
    text[size] = '\0';

    /* bt_config_set: name NUL value, or name=value */
    if (bt_config_create(&c) != BT_OK)
        abort();
    name = text;
    sep = memchr(text, '\0', size) ? NULL : strchr(text, '=');
    if (memchr(text, '\0', size))
        value = text + strlen(text) + 1;
    else if (sep) {
        *sep = '\0';
        value = sep + 1;
    } else
        value = text + size;
    before = dump(c);
    st = bt_config_set(c, name, value);
    if (st == BT_OK) {
        FUZZ_CHECK(bt_config_is_set(c, name) == 1, "'%s' set but not is_set", name);
        st = bt_config_get(c, name, got, sizeof got);
        FUZZ_CHECK(st == BT_OK || st == BT_E_INVALID_ARG, "get '%s': %s", name, bt_last_error());
        /* setting what was read back is accepted too */
        if (st == BT_OK)
            FUZZ_CHECK(bt_config_set(c, name, got) == BT_OK, "'%s'='%s' read back, refused: %s", name,
                       got, bt_last_error());
    } else {
        FUZZ_CHECK(bt_last_error()[0], "bt_config_set: status %d without a message", st);
        after = dump(c);
        FUZZ_CHECK(!strcmp(before, after), "a failed bt_config_set changed the config");
        free(after);
    }
    free(before);
    (void)bt_config_get(c, name, got, 8);
    bt_config_free(c);

    /* the library's lines, all or nothing */
    if (size)
        memcpy(text, data, size);
    text[size] = '\0';
    if (bt_config_create(&c) != BT_OK)
        abort();
    before = dump(c);
    st = bti_config_set_lines(c, text, "fuzz", "lines");
    after = dump(c);
    if (st != BT_OK) {
        FUZZ_CHECK(bt_last_error()[0], "bti_config_set_lines: status %d without a message", st);
        FUZZ_CHECK(!strcmp(before, after), "failed bti_config_set_lines changed the config");
    }
    free(before);
    free(after);
    bt_config_free(c);

    /* the barlow command's config file */
    fuzz_write(cfg_path, data, size);
    if (bt_config_create(&c) != BT_OK)
        abort();
    err[0] = '\0';
    if (cfg_read_file(c, cfg_path, err, sizeof err) != 0)
        FUZZ_CHECK(err[0], "cfg_read_file failed without a message");
    bt_config_free(c);

    free(text);
    return 0;
}
