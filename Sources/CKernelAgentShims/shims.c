#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "ka_shims.h"

int ka_rename_exchange(const char *a, const char *b) {
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

int ka_open_unnamed(const char *dir, unsigned int mode) {
    return open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
}

int ka_link_unnamed(int fd, const char *path) {
    char proc[64];
    if (snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd) >= (int)sizeof proc) { errno = EOVERFLOW; return -1; }
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

int ka_pending_bytes(int fd) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0) return -1;
    return n;
}
