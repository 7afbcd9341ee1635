#ifndef KA_SHIMS_H
#define KA_SHIMS_H

/// Atomically swaps two paths (Linux renameat2 RENAME_EXCHANGE), which Swift's Glibc module does not export.
/// Returns 0, or -1 with errno set.
int ka_rename_exchange(const char *a, const char *b);

/// An unnamed regular file in `dir` (open O_TMPFILE, read-write), which Swift's Glibc module does not export:
/// it has no name until `ka_link_unnamed` gives it one, and vanishes with its last descriptor (or a kill).
/// Returns the descriptor, or -1 with errno set (EOPNOTSUPP/EISDIR where the file system lacks O_TMPFILE).
int ka_open_unnamed(const char *dir, unsigned int mode);

/// Gives the unnamed file `fd` the name `path` (linkat through /proc/self/fd, which needs no capability).
/// Returns 0, or -1 with errno set.
int ka_link_unnamed(int fd, const char *path);

/// How many bytes wait unread in the pipe or socket `fd` (ioctl FIONREAD, variadic, so not importable).
/// Returns the count, or -1 with errno set.
int ka_pending_bytes(int fd);

#endif
