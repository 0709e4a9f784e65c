//! stasis image format.
