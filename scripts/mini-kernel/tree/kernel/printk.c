// SPDX-License-Identifier: GPL-2.0-only
/*
 *  kernel/printk.c of the miniature tree: a log ring buffer of 1 << CONFIG_LOG_BUF_SHIFT bytes.
 */
#include <linux/export.h>
#include <linux/printk.h>
#include <linux/stdarg.h>

#define LOG_BUF_LEN (1 << CONFIG_LOG_BUF_SHIFT)

static char log_buf[LOG_BUF_LEN] __aligned(8);
static unsigned long log_next;
static unsigned long log_dropped;

static void log_store(const char *text, int len)
{
	int i;

	for (i = 0; i < len; i++) {
		if (log_next - log_dropped >= LOG_BUF_LEN)
			log_dropped++;
		log_buf[log_next++ % LOG_BUF_LEN] = text[i];
	}
}

int printk(const char *fmt, ...)
{
	char line[1024];
	va_list args;
	int len;

	/* Drop the level prefix ("\001" + digit), as the console does. */
	if (fmt[0] == '\001' && fmt[1] >= '0' && fmt[1] <= '7')
		fmt += 2;
	va_start(args, fmt);
	len = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (len > (int)sizeof(line) - 1)
		len = sizeof(line) - 1;
	log_store(line, len);
	return len;
}
EXPORT_SYMBOL(printk);
