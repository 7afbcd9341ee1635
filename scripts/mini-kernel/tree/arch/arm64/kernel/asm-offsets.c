// SPDX-License-Identifier: GPL-2.0-only
/*
 * Generate definitions needed by assembly language modules.
 * `make prepare` compiles this to asm-offsets.s and turns its "->" markers into
 * include/generated/asm-offsets.h, as kbuild does.
 */
#include <linux/kbuild.h>
#include <linux/stddef.h>
#include <asm/thread_info.h>

int main(void);
int main(void)
{
	DEFINE(TSK_TI_FLAGS, offsetof(struct thread_info, flags));
	DEFINE(TSK_TI_PREEMPT, offsetof(struct thread_info, preempt_count));
	DEFINE(TSK_TI_CPU, offsetof(struct thread_info, cpu));
	DEFINE(THREAD_INFO_SIZE, sizeof(struct thread_info));
	BLANK();
	return 0;
}
