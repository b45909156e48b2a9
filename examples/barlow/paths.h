/* paths.h - what a path names, for the files of the `barlow` command. */
#ifndef BARLOW_PATHS_H
#define BARLOW_PATHS_H

#include <stddef.h>

/* 1 when something exists at path (any kind), else 0. */
int path_exists(const char *path);

/* 1 when path is a regular file (after symlinks), else 0. */
int path_is_file(const char *path);

/* 1 when path is a folder (after symlinks), else 0. */
int path_is_dir(const char *path);

/* The folder part of path into out ("." when there is none, "/" for a root file). */
void path_dir(const char *path, char *out, size_t cap);

#endif
