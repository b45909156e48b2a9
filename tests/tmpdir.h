/* tmpdir.h - a fresh directory under /tmp for each test (tests/util_tmpdir.c):
 * test_dir_make and test_dir_remove are a Check fixture's setup and teardown. */
#ifndef TMPDIR_H
#define TMPDIR_H

extern char test_dir[64];

void test_dir_make(void);
void test_dir_remove(void);
/* test_dir/name; the last four results stay valid */
const char *test_path(const char *name);

#endif
