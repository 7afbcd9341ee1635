// SPDX-License-Identifier: GPL-2.0-or-later
/*
 *  kernel/configs.c of the miniature tree (CONFIG_IKCONFIG): marks that the Image records its .config
 *  (scripts/mini/mkimage writes its b2sum into the Image).
 */
#include <linux/compiler.h>

static const char ikconfig_marker[] __used = "IKCFG_ST: the .config b2sum is in the Image header";
