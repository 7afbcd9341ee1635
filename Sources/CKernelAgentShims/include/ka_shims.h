#ifndef KA_SHIMS_H
#define KA_SHIMS_H

/// Atomically swaps two paths (Linux renameat2 RENAME_EXCHANGE), which Swift's Glibc module does not export.
/// Returns 0, or -1 with errno set.
int ka_rename_exchange(const char *a, const char *b);

#endif
