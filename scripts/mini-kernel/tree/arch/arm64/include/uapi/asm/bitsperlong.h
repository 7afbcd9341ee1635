/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI__ASM_BITSPERLONG_H
#define _UAPI__ASM_BITSPERLONG_H

#define __BITS_PER_LONG 64

#endif /* _UAPI__ASM_BITSPERLONG_H */
