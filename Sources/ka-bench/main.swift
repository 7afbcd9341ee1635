print("ka-bench: see scripts/bench-promote")
