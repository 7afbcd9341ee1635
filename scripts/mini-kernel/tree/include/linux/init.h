/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_INIT_H
#define _LINUX_INIT_H

#include <linux/compiler.h>

typedef int (*initcall_t)(void);
typedef void (*exitcall_t)(void);

#define __init __section(".init.text")
#define __exit __section(".exit.text")

/* Built-in initcalls are collected in the "initcall" section; start_kernel() runs them in link order. */
#define device_initcall(fn) \
	static initcall_t __initcall_##fn __used __section("initcall") = fn

#endif /* _LINUX_INIT_H */
