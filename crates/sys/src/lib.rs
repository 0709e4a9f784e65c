//! stasis-sys: the syscall / ptrace / procfs boundary. Every `unsafe` block of stasis lives
//! here, each with a `// SAFETY:` line.

pub mod probe;
