//! Kernel feature probes used by `stasis check`.
