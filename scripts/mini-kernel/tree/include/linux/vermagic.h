/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_VERMAGIC_H
#define _LINUX_VERMAGIC_H

#include <generated/utsrelease.h>

#ifdef CONFIG_PREEMPT
#define MODULE_VERMAGIC_PREEMPT "preempt "
#else
#define MODULE_VERMAGIC_PREEMPT ""
#endif
#ifdef CONFIG_MODULE_UNLOAD
#define MODULE_VERMAGIC_MODULE_UNLOAD "mod_unload "
#else
#define MODULE_VERMAGIC_MODULE_UNLOAD ""
#endif

#define VERMAGIC_STRING \
	UTS_RELEASE " SMP " MODULE_VERMAGIC_PREEMPT MODULE_VERMAGIC_MODULE_UNLOAD "aarch64"

#endif /* _LINUX_VERMAGIC_H */
