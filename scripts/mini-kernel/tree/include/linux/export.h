/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_EXPORT_H
#define _LINUX_EXPORT_H

#include <linux/compiler.h>

/* EXPORT_SYMBOL(sym) leaves __ksymtab_<sym>: modpost lists it in Module.symvers, depmod finds it in System.map. */
#define EXPORT_SYMBOL(sym) \
	extern typeof(sym) sym; \
	const void *const __ksymtab_##sym __used __section("__ksymtab") = (const void *)&sym

#endif /* _LINUX_EXPORT_H */
