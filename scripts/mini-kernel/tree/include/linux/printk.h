/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __KERNEL_PRINTK__
#define __KERNEL_PRINTK__

#include <linux/compiler.h>
#include <linux/stdarg.h>
#include <linux/types.h>

#define KERN_INFO "\0016"
#define KERN_NOTICE "\0015"

__printf(1, 2) int printk(const char *fmt, ...);
#define pr_info(fmt, ...) printk(KERN_INFO fmt, ##__VA_ARGS__)

int vsnprintf(char *buf, size_t size, const char *fmt, va_list args);
__printf(3, 4) int snprintf(char *buf, size_t size, const char *fmt, ...);

#endif /* __KERNEL_PRINTK__ */
