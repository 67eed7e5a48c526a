//! strata image store
