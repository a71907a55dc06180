"""The run directory's infrastructure, used by every wing: its layout (`layout.RunDir`, the one module that spells a
run path), atomic writes (`atomic`), checksums (`integrity`), per-run and per-fold locks (`locks`) and the named fault
points of the crash tests (`faults`). Imports only the standard library (and `faults`, `atomic` each other)."""
