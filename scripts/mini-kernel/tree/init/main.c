// SPDX-License-Identifier: GPL-2.0-only
/*
 *  init/main.c of the miniature tree: start_kernel() prints the banner and runs the built-in initcalls.
 *  Nothing here runs on a host: the fleet-in-a-box boots the Image by reading it (scripts/mini/mkimage).
 */
#include <linux/init.h>
#include <linux/printk.h>
#include <linux/utsname.h>

/* Weak: with every driver a module the section is empty and the linker defines neither. */
extern initcall_t __start_initcall[] __attribute__((weak)), __stop_initcall[] __attribute__((weak));
extern int parse_args(const char *cmdline);
extern const char *boot_command_line;

void start_kernel(void);
void __init start_kernel(void)
{
	initcall_t *call;
	int ret;

	printk(KERN_NOTICE "%s", linux_banner);
	printk(KERN_INFO "Kernel command line: %s\n", boot_command_line);
	parse_args(boot_command_line);
	for (call = __start_initcall; call < __stop_initcall; call++) {
		ret = (*call)();
		if (ret)
			printk(KERN_INFO "initcall %p returned %d\n", (void *)*call, ret);
	}
	for (;;)
		;
}
