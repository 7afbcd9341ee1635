/* kernel-agent's Bar 0 init: the first process of the kernel `ka build` just built, booted in qemu before anything
 * is signed. Built against the tree's own nolibc (tools/include/nolibc, `-include nolibc.h`), so no C library for
 * the target is needed. It mounts proc, sys and dev, reports the release, loads the modules named in
 * /modules/order (one file name a line, dependencies first), then powers off. Every line the agent reads starts
 * with "KA-BAR0 ". */
#include <linux/reboot.h>

static void say(const char *s) { write(1, s, strlen(s)); }

static void say_int(long n) {
    char buf[24];
    int i = sizeof(buf);
    int neg = n < 0;
    buf[--i] = 0;
    if (neg) n = -n;
    do { buf[--i] = '0' + n % 10; n /= 10; } while (n && i > 1);
    if (neg) buf[--i] = '-';
    say(buf + i);
}

static void load(const char *name) {
    char path[256] = "/modules/";
    size_t n = strlen(name);
    if (n + 10 > sizeof(path)) { say("KA-BAR0 module "); say(name); say(" failed name-too-long\n"); return; }
    memcpy(path + 9, name, n + 1);
    int fd = open(path, O_RDONLY, 0);
    if (fd < 0) { say("KA-BAR0 module "); say(name); say(" failed open "); say_int(errno); say("\n"); return; }
    long r = syscall(__NR_finit_module, fd, "", 0);
    say("KA-BAR0 module "); say(name);
    if (r == 0) say(" loaded\n");
    else { say(" failed "); say_int(errno); say("\n"); }
    close(fd);
}

int main(void) {
    struct utsname u;
    mount("proc", "/proc", "proc", 0, 0);
    mount("sysfs", "/sys", "sysfs", 0, 0);
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    if (uname(&u) == 0) { say("KA-BAR0 uname-r "); say(u.release); say("\n"); }
    else { say("KA-BAR0 uname failed "); say_int(errno); say("\n"); }

    static char order[4096];
    int fd = open("/modules/order", O_RDONLY, 0);
    if (fd >= 0) {
        long got = read(fd, order, sizeof(order) - 1);
        close(fd);
        if (got > 0) {
            order[got] = 0;
            char *line = order;
            for (char *p = order; *p; p++) {
                if (*p != '\n') continue;
                *p = 0;
                if (*line) load(line);
                line = p + 1;
            }
            if (*line) load(line);
        }
    }
    say("KA-BAR0 done\n");
    reboot(LINUX_REBOOT_CMD_POWER_OFF);
    return 0;
}
