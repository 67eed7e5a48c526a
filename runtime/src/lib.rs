//! strata runtime
