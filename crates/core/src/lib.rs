//! stasis engine.
