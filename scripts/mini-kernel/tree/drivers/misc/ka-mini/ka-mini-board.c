// SPDX-License-Identifier: GPL-2.0-only
/*
 * ka-mini-board: names the fleet's boards (their device trees are in arch/arm64/boot/dts/rockchip/) and
 * is autoloaded for them through its "of:" aliases, which depmod writes to modules.alias.
 */
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/stddef.h>

struct ka_board {
	const char *compatible;
	const char *name;
	const char *host;
};

static const struct ka_board ka_boards[] = {
	{ "pine64,pinebook-pro", "Pinebook Pro (RK3399)", "fresnel" },
	{ "radxa,rock-5-itx", "Radxa Rock 5 ITX+ (RK3588)", "boltzmann" },
	{ "coolpi,pi-cm5-genbook", "CoolPi CM5 GenBook (RK3588)", "ampere" },
};

extern const char *get_param(const char *name);

static int __init ka_mini_board_init(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ka_boards); i++)
		pr_info("ka-mini-board: %s = %s (%s)\n", ka_boards[i].compatible, ka_boards[i].name, ka_boards[i].host);
	if (get_param("ka_mini_board.verbose"))
		pr_info("ka-mini-board: %d boards\n", (int)ARRAY_SIZE(ka_boards));
	return 0;
}
module_init(ka_mini_board_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Miniature-tree module: the fleet's boards");
MODULE_ALIAS("of:N*T*Cpine64,pinebook-pro");
MODULE_ALIAS("of:N*T*Cradxa,rock-5-itx");
MODULE_ALIAS("of:N*T*Ccoolpi,pi-cm5-genbook");
