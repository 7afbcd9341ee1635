// SPDX-License-Identifier: GPL-2.0-or-later
/*
 *  kernel/params.c of the miniature tree: "name=value" words of the command line.
 */
#include <linux/export.h>
#include <linux/printk.h>
#include <linux/string.h>
#include <linux/types.h>

const char *boot_command_line = "console=ttyS2,1500000 root=PARTLABEL=root rw rootwait";

static char param_names[16][32];
static char param_values[16][64];
static int nparams;

int parse_args(const char *cmdline);
int parse_args(const char *cmdline)
{
	const char *p = cmdline;

	nparams = 0;
	while (*p && nparams < 16) {
		size_t n = 0, v = 0;

		while (*p == ' ')
			p++;
		if (!*p)
			break;
		while (*p && *p != ' ' && *p != '=' && n < sizeof(param_names[0]) - 1)
			param_names[nparams][n++] = *p++;
		param_names[nparams][n] = '\0';
		if (*p == '=') {
			p++;
			while (*p && *p != ' ' && v < sizeof(param_values[0]) - 1)
				param_values[nparams][v++] = *p++;
		}
		param_values[nparams][v] = '\0';
		while (*p && *p != ' ')
			p++;
		nparams++;
	}
	return nparams;
}

/* The value of a command-line parameter, or NULL. */
const char *get_param(const char *name);
const char *get_param(const char *name)
{
	int i;

	for (i = 0; i < nparams; i++)
		if (!strcmp(param_names[i], name))
			return param_values[i];
	return (const char *)0;
}
EXPORT_SYMBOL(get_param);
