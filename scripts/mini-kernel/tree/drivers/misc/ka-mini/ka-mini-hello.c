// SPDX-License-Identifier: GPL-2.0-only
/*
 * ka-mini-hello: prints the release it was built for when loaded (its vermagic says the same).
 */
#include <generated/utsrelease.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init ka_mini_hello_init(void)
{
	pr_info("ka-mini-hello: built for %s\n", UTS_RELEASE);
	return 0;
}

static void __exit ka_mini_hello_exit(void)
{
	pr_info("ka-mini-hello: unloaded\n");
}

module_init(ka_mini_hello_init);
module_exit(ka_mini_hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kernel-agent fleet-box");
MODULE_DESCRIPTION("Miniature-tree module: prints the kernel release");
