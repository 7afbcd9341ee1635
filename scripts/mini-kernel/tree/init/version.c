// SPDX-License-Identifier: GPL-2.0-only
/*
 *  init/version.c: the kernel's name, release and build banner.
 */
#include <generated/compile.h>
#include <generated/utsrelease.h>
#include <linux/utsname.h>

struct new_utsname init_uts_name = {
	.sysname = "Linux",
	.nodename = CONFIG_DEFAULT_HOSTNAME,
	.release = UTS_RELEASE,
	.version = UTS_VERSION,
	.machine = UTS_MACHINE,
	.domainname = "(none)",
};

/* What /proc/version shows. */
const char linux_banner[] =
	"Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY "@" LINUX_COMPILE_HOST ") (" LINUX_COMPILER ") "
	UTS_VERSION "\n";
