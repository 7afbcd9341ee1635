/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _LINUX_MODULE_H
#define _LINUX_MODULE_H

#include <linux/compiler.h>
#include <linux/init.h>
#include <linux/export.h>

/* "key=value" strings in .modinfo, which modinfo(8) and depmod(8) read; built-in ones carry "modname.". */
#ifdef MODULE
#define __MODULE_INFO_PREFIX
#else
#define __MODULE_INFO_PREFIX KBUILD_MODNAME "."
#endif
#define __MODULE_INFO(tag, name, info) \
	static const char __UNIQUE_ID(name)[] __used __section(".modinfo") __aligned(1) = \
		__MODULE_INFO_PREFIX __stringify(tag) "=" info

#define MODULE_INFO(tag, info) __MODULE_INFO(tag, tag, info)
#define MODULE_LICENSE(_license) MODULE_INFO(license, _license)
#define MODULE_AUTHOR(_author) MODULE_INFO(author, _author)
#define MODULE_DESCRIPTION(_description) MODULE_INFO(description, _description)
#define MODULE_ALIAS(_alias) MODULE_INFO(alias, _alias)

#ifdef MODULE
#define module_init(initfn) \
	static inline initcall_t __maybe_unused __inittest(void) { return initfn; } \
	int init_module(void) __attribute__((__alias__(#initfn)))
#define module_exit(exitfn) \
	static inline exitcall_t __maybe_unused __exittest(void) { return exitfn; } \
	void cleanup_module(void) __attribute__((__alias__(#exitfn)))
#else
#define module_init(initfn) device_initcall(initfn)
#define module_exit(exitfn) \
	static exitcall_t __exitcall_##exitfn __used __section(".exitcall.exit") = exitfn
#endif

#define __maybe_unused __attribute__((__unused__))

#endif /* _LINUX_MODULE_H */
