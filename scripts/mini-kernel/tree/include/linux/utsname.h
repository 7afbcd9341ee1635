/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_UTSNAME_H
#define _LINUX_UTSNAME_H

#include <uapi/linux/utsname.h>

extern struct new_utsname init_uts_name;
extern const char linux_banner[];

#endif /* _LINUX_UTSNAME_H */
