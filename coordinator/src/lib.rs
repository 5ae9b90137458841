//! rustle-cross coordinator library.
