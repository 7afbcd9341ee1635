/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef __ASM_THREAD_INFO_H
#define __ASM_THREAD_INFO_H

#include <linux/types.h>

/* Low-level task data of the miniature tree. */
struct thread_info {
	unsigned long flags;
	u64 ttbr0;
	int preempt_count;
	u32 cpu;
};

#endif /* __ASM_THREAD_INFO_H */
