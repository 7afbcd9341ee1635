#!/usr/bin/env python3
"""Generate a synthetic kernel-agent workspace for the promote benchmark.

  gen-bench-tree.py DIR [--patches 10000] [--files-per-dir 10] [--regions 10] [--added 150]

DIR/base/       baseline tree: one C file per group of `regions` patches
DIR/patches/    driver/dNNN/fFFFF-rR.patch, real format-patch mails with Scope:/Campaign: trailers
DIR/fleet/      hosts.yaml + bench.yaml (scopes: [driver])
Each patch inserts `added` lines into its own region of its file, so the series applies with zero fuzz
and no two patches overlap. Deterministic: the same arguments give the same bytes.
"""
import argparse, os, random

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--patches", type=int, default=10000)
ap.add_argument("--files-per-dir", type=int, default=10)
ap.add_argument("--regions", type=int, default=10)
ap.add_argument("--added", type=int, default=150)
a = ap.parse_args()

rnd = random.Random(7)
words = ["regmap", "clk", "of_node", "dev", "irq", "dma", "fence", "resv", "buf", "opp", "spi", "i2s", "pm", "ret", "val"]
def line(i):
    return "\t%s_%s(%s, %d); /* %s */" % (rnd.choice(words), rnd.choice(words), rnd.choice(words), i, " ".join(rnd.choice(words) for _ in range(4)))

region_len = a.added + 20
nfiles = (a.patches + a.regions - 1) // a.regions
os.makedirs(os.path.join(a.dir, "fleet"), exist_ok=True)
with open(os.path.join(a.dir, "fleet", "hosts.yaml"), "w") as f:
    f.write("hosts:\n  bench: {roles: [target], arch: aarch64, distro: arch, wake: always}\n")
with open(os.path.join(a.dir, "fleet", "bench.yaml"), "w") as f:
    f.write("host: bench\nbaseline: {repo: synthetic, ref: v7.0}\nkernel_suffix: bench\nscopes: [driver]\n")
count = 0
for fi in range(nfiles):
    path = "drivers/bench/f%05d.c" % fi
    base = [line(i) for i in range(a.regions * region_len + 10)]
    os.makedirs(os.path.join(a.dir, "base", os.path.dirname(path)), exist_ok=True)
    with open(os.path.join(a.dir, "base", path), "w") as f:
        f.write("\n".join(base) + "\n")
    d = "driver/d%04d" % (fi // a.files_per_dir)
    os.makedirs(os.path.join(a.dir, "patches", d), exist_ok=True)
    shift = 0
    for r in range(a.regions):
        if count == a.patches:
            break
        at = r * region_len + 10             # insert after this 0-based line of the original
        ctx_before = base[at - 3:at]
        ctx_after = base[at:at + 3]
        added = ["+" + line(10_000 + j) for j in range(a.added)]
        old_start = at - 3 + 1 + shift
        body = [" " + l for l in ctx_before] + added + [" " + l for l in ctx_after]
        mail = (
            "From %040x Mon Sep 17 00:00:00 2001\n" % (count + 1) +
            "From: bench <bench@example.invalid>\nDate: Sat, 9 May 2026 10:00:00 +0200\n" +
            "Subject: [PATCH] bench: f%05d region %d\n\nSynthetic patch %d.\n\n" % (fi, r, count) +
            "Signed-off-by: bench <bench@example.invalid>\nCampaign: bench\nScope: %s\n---\n" % d +
            "diff --git a/%s b/%s\n--- a/%s\n+++ b/%s\n" % (path, path, path, path) +
            "@@ -%d,6 +%d,%d @@\n" % (old_start, old_start, 6 + a.added) +
            "\n".join(body) + "\n-- \n2.39.5\n\n"
        )
        with open(os.path.join(a.dir, "patches", d, "f%05d-r%02d.patch" % (fi, r)), "w") as f:
            f.write(mail)
        shift += a.added
        count += 1
print("generated %d patches in %d files under %s" % (count, nfiles, a.dir))
