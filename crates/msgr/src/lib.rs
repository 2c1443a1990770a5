//! msgr facade.
