/* fixtures.h - what several suites set up (tests/util_fixtures.c): a fresh directory
 * under /tmp for each test (test_dir_make and test_dir_remove are a Check fixture's
 * setup and teardown), and configs and models from name/value lists. */
#ifndef FIXTURES_H
#define FIXTURES_H

#include <barlow.h>

extern char test_dir[64];

void test_dir_make(void);
void test_dir_remove(void);
/* test_dir/name; the last four results stay valid */
const char *test_path(const char *name);

/* A config with the NULL-terminated name, value lists kv then more (either NULL) set;
 * a failing set fails the test with the library's message. */
bt_config *test_config(const char *const *kv, const char *const *more);
/* A model made from test_config(kv, more). */
bt_model *test_model(const char *const *kv, const char *const *more);

#endif
