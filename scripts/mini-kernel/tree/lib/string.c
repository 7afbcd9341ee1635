// SPDX-License-Identifier: GPL-2.0
/*
 *  lib/string.c of the miniature tree: what the compiler may call even in freestanding code.
 */
#include <linux/export.h>
#include <linux/string.h>

void *memcpy(void *dest, const void *src, size_t n)
{
	char *d = dest;
	const char *s = src;

	while (n--)
		*d++ = *s++;
	return dest;
}
EXPORT_SYMBOL(memcpy);

void *memmove(void *dest, const void *src, size_t n)
{
	char *d = dest;
	const char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dest, src, n);
	d += n;
	s += n;
	while (n--)
		*--d = *--s;
	return dest;
}
EXPORT_SYMBOL(memmove);

void *memset(void *s, int c, size_t n)
{
	char *p = s;

	while (n--)
		*p++ = (char)c;
	return s;
}
EXPORT_SYMBOL(memset);

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}
EXPORT_SYMBOL(memcmp);

size_t strlen(const char *s)
{
	const char *p = s;

	while (*p)
		p++;
	return p - s;
}
EXPORT_SYMBOL(strlen);

size_t strnlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n])
		n++;
	return n;
}
EXPORT_SYMBOL(strnlen);

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}
EXPORT_SYMBOL(strcmp);

size_t strscpy(char *dest, const char *src, size_t size)
{
	size_t n = 0;

	if (!size)
		return 0;
	while (n + 1 < size && src[n]) {
		dest[n] = src[n];
		n++;
	}
	dest[n] = '\0';
	return n;
}
EXPORT_SYMBOL(strscpy);
